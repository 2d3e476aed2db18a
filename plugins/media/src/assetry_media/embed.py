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


def color_embedding(fp: BinaryIO | bytes) -> list[float]:
    """The image's colour distribution as a unit-length vector of `COLOR_EMBEDDING_DIM` floats.

    The image is downscaled to at most 64 x 64 pixels, each pixel is counted in one of 4 x 4 x 4 RGB bins
    (transparency ignored; the first frame of an animation), and the counts are L2-normalised, so the dot
    product of two embeddings is their cosine similarity.

    :param fp: an open binary file or the encoded image bytes.
    :raises PIL.UnidentifiedImageError: when the data is not an image Pillow reads.
    """
    source = io.BytesIO(fp) if isinstance(fp, bytes) else fp
    with Image.open(source) as image:
        # Reduce before converting: JPEG then decodes at a fraction of its size, and no full-size RGB copy
        # of a large image is made.
        image.thumbnail(_THUMBNAIL, Image.Resampling.BOX)
        small = image.convert("RGB")
    counts = [0] * COLOR_EMBEDDING_DIM
    shift = _SHIFT
    per_channel = BINS_PER_CHANNEL
    data = small.tobytes()
    for red, green, blue in zip(data[0::3], data[1::3], data[2::3], strict=True):
        counts[((red >> shift) * per_channel + (green >> shift)) * per_channel + (blue >> shift)] += 1
    norm = math.sqrt(sum(c * c for c in counts))
    return [c / norm for c in counts] if norm else [0.0] * COLOR_EMBEDDING_DIM
