"""Reading what an image file says about itself without decoding its pixels.

Pillow's `Image.open` parses only the header and the metadata before the image data; nothing here calls
`load()` (which decodes) or APIs that load implicitly (`PngImageFile.text`, `PngImageFile.getexif`). That
keeps ingest fast and makes decompression bombs harmless: their header is read, their pixels never are.
The cost: PNG text chunks placed after the image data are not seen (every generator we read writes them
before it).
"""

from __future__ import annotations

import warnings
from typing import BinaryIO

import attrs
from PIL import ExifTags, Image

# Formats Pillow decodes that are plain raster images; an SVG or PDF is "image/..." too, but not for Pillow.
NOT_RASTER = frozenset({"image/svg+xml"})


class ImageTooLarge(Exception):
    """The header declares more pixels than the configured limit (a possible decompression bomb)."""

    def __init__(self, pixels: int | None, limit: int) -> None:
        self.pixels = pixels
        self.limit = limit
        shown = f"{pixels} pixels" if pixels is not None else "size"
        super().__init__(f"image {shown} exceeds the limit of {limit} pixels")


@attrs.frozen(kw_only=True)
class ImageInfo:
    """Header facts and embedded text of one image."""

    format: str | None
    width: int
    height: int
    text: dict[str, str] = attrs.field(factory=dict)
    """PNG text chunks (tEXt, zTXt, iTXt) by keyword."""
    user_comment: str | None = None
    """EXIF UserComment, decoded."""
    comment: str | None = None
    """JPEG/GIF comment, decoded."""


def decode_user_comment(raw: bytes | str | None) -> str | None:
    """Decode an EXIF UserComment (an 8-byte character-code prefix, then the text)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw
    else:
        prefix, body = raw[:8], raw[8:]
        if prefix == b"UNICODE\x00":
            if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
                encoding = "utf-16-le" if body[:2] == b"\xff\xfe" else "utf-16-be"
                body = body[2:]
            else:
                # piexif (and so WebUI) writes big-endian; other writers follow the TIFF byte order. ASCII
                # text in UTF-16 has its zero bytes in the high half of each code unit.
                even_zeros = body[0::2].count(0)
                odd_zeros = body[1::2].count(0)
                encoding = "utf-16-be" if even_zeros > odd_zeros else "utf-16-le"
            text = body[: len(body) // 2 * 2].decode(encoding, errors="replace")
        elif prefix == b"JIS\x00\x00\x00\x00\x00":
            text = body.decode("shift_jis", errors="replace")
        elif prefix in (b"ASCII\x00\x00\x00", b"\x00" * 8):
            text = body.decode("utf-8", errors="replace")
        else:
            text = raw.decode("utf-8", errors="replace")
    text = text.replace("\x00", "").strip()
    return text or None


def _decode_comment(raw: object) -> str | None:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return None
    return raw.replace("\x00", "").strip() or None


def _user_comment(exif_bytes: object) -> str | None:
    if not isinstance(exif_bytes, bytes) or not exif_bytes:
        return None
    exif = Image.Exif()
    # Parsing arbitrary EXIF can fail in many ways inside Pillow; a bad EXIF block only loses the comment.
    try:
        exif.load(exif_bytes)
        value = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    except Exception:
        return None
    return decode_user_comment(value) if isinstance(value, (bytes, str)) else None


def read_image_info(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    """Read size and embedded text from an image stream without decoding pixels.

    :raises ImageTooLarge: when the header declares more than ``max_pixels`` pixels.
    :raises PIL.UnidentifiedImageError, OSError, ValueError, ...: when Pillow cannot parse the file.
    """
    with warnings.catch_warnings():
        # Pillow warns above its own limit and raises at twice it; the configured limit decides here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(fp)
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, max_pixels) from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(width * height, max_pixels)
        info = image.info
        text = {
            key: str(value) for key, value in info.items() if isinstance(key, str) and isinstance(value, str)
        }
        return ImageInfo(
            format=image.format,
            width=width,
            height=height,
            text=text,
            user_comment=_user_comment(info.get("exif")),
            comment=_decode_comment(info.get("comment")),
        )
