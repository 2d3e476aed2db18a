"""A colour-histogram image embedding for the demo.

This is not a semantic model: it knows nothing of what an image shows, only which colours it is made of.
Two sunsets come out close because they share a palette; a red car and a red sunset would too. It needs no
model download, runs in a millisecond, and makes "find similar images" demonstrable honestly: results
are images with a similar palette.
"""

from __future__ import annotations

import io
import math
from typing import BinaryIO

from PIL import Image

BINS_PER_CHANNEL = 4
COLOR_EMBEDDING_DIM = BINS_PER_CHANNEL**3
"""Length of `color_embedding` vectors (4 x 4 x 4 RGB bins)."""

_THUMBNAIL = (64, 64)
_SHIFT = 6  # 256 levels per channel >> 6 = 4 bins

# Sample ranges of the modes that do not say theirs ("I", 32-bit; "F", float): the brightest value each
# may hold, and how many levels that range is. Floats are taken as 0 to 1 when they fit, the usual
# convention for float images.
_RANGES = ((255.0, 256.0), (65535.0, 65536.0), (2.0**32 - 1, 2.0**32))
_FLOAT_RANGE = (1.0, 1.0)


def _as_8_bit(image: Image.Image) -> Image.Image:
    """Greyscale wider than 8 bits (16-bit PNG and TIFF, 32-bit and float TIFF) scaled to 8 bits.

    ``convert("RGB")`` clips such samples at 255 instead of scaling them, so all but the darkest pixels
    of a 16-bit image came out white.
    """
    if image.mode.startswith("I;16"):
        levels = 65536.0
        image = image.convert("I")
    elif image.mode in ("I", "F"):
        brightest = float(image.getextrema()[1])  # type: ignore[arg-type]  # a pair of numbers for I and F
        ranges = (_FLOAT_RANGE, *_RANGES) if image.mode == "F" else _RANGES
        levels = next((n for top, n in ranges if brightest <= top), ranges[-1][1])
    else:
        return image
    # Equal-width bins over the range: a 16-bit sample keeps its top byte, 0.5 of a float becomes 128.
    return image.convert("F").point(lambda v: v * (256.0 / levels)).convert("L")


def color_embedding(fp: BinaryIO | bytes) -> list[float]:
    """The image's colour distribution as a unit-length vector of `COLOR_EMBEDDING_DIM` floats.

    The image is downscaled to at most 64 x 64 pixels, each pixel is counted in one of 4 x 4 x 4 RGB bins
    (transparency ignored; the first frame of an animation; 16-bit, 32-bit and float greyscale scaled to
    8 bits), and the counts are L2-normalised, so the dot product of two embeddings is their cosine
    similarity.

    :param fp: an open binary file or the encoded image bytes.
    :raises PIL.UnidentifiedImageError: when the data is not an image Pillow reads.
    """
    source = io.BytesIO(fp) if isinstance(fp, bytes) else fp
    with Image.open(source) as image:
        # Reduce before converting: JPEG then decodes at a fraction of its size, and no full-size RGB copy
        # of a large image is made.
        image.thumbnail(_THUMBNAIL, Image.Resampling.BOX)
        small = _as_8_bit(image).convert("RGB")
    counts = [0] * COLOR_EMBEDDING_DIM
    shift = _SHIFT
    per_channel = BINS_PER_CHANNEL
    data = small.tobytes()
    for red, green, blue in zip(data[0::3], data[1::3], data[2::3], strict=True):
        counts[((red >> shift) * per_channel + (green >> shift)) * per_channel + (blue >> shift)] += 1
    norm = math.sqrt(sum(c * c for c in counts))
    return [c / norm for c in counts] if norm else [0.0] * COLOR_EMBEDDING_DIM
