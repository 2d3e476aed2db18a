"""Reading what an image file says about itself without decoding its pixels.

Pillow's `Image.open` parses only the header and the metadata before the image data; nothing here calls
`load()` (which decodes) or APIs that load implicitly (`PngImageFile.text`, `PngImageFile.getexif`). That
keeps ingest fast and makes decompression bombs harmless: their header is read, their pixels never are.
The cost: PNG text chunks placed after the image data are not seen (every generator we read writes them
before it).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import BinaryIO

import attrs
from PIL import ExifTags, Image, PngImagePlugin, TiffImagePlugin

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
    """As displayed: swapped from the stored pixels' when the EXIF orientation is a quarter turn (5 to 8)."""
    height: int
    text: dict[str, str] = attrs.field(factory=dict)
    """PNG text chunks (tEXt, zTXt, iTXt) by keyword."""
    user_comment: str | None = None
    """EXIF UserComment, decoded."""
    comment: str | None = None
    """JPEG/GIF comment, decoded."""
    skipped_text: tuple[str, ...] = ()
    """Keywords of PNG text chunks left out because they decompress to more than Pillow reads
    (`PIL.PngImagePlugin.MAX_TEXT_CHUNK`, or `MAX_TEXT_MEMORY` for all text together)."""


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


# EXIF orientations that turn the stored pixels a quarter turn (transpose, rotate 90, transverse, rotate
# 270): viewers show such an image with its width and height swapped.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _parse_exif(exif_bytes: object) -> Image.Exif | None:
    if not isinstance(exif_bytes, bytes) or not exif_bytes:
        return None
    exif = Image.Exif()
    # Parsing arbitrary EXIF can fail in many ways inside Pillow; a bad EXIF block only loses what it says.
    try:
        exif.load(exif_bytes)
    except Exception:
        return None
    return exif


def _user_comment(exif: Image.Exif | None) -> str | None:
    if exif is None:
        return None
    try:
        value = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    except Exception:
        return None
    return decode_user_comment(value) if isinstance(value, (bytes, str)) else None


def _displayed_size(image: Image.Image, exif: Image.Exif | None) -> tuple[int, int]:
    """Width and height as viewers show the image, after its EXIF orientation."""
    width, height = image.size
    try:
        if isinstance(image, TiffImagePlugin.TiffImageFile):
            # A TIFF keeps its orientation among its own tags. Recent Pillow reports such a TIFF's size as
            # displayed already, older as stored; the stored size is in the tags either way.
            width, height = (
                image.tag_v2[TiffImagePlugin.IMAGEWIDTH],
                image.tag_v2[TiffImagePlugin.IMAGELENGTH],
            )
            orientation = image.tag_v2.get(ExifTags.Base.Orientation)
        else:
            orientation = exif.get(ExifTags.Base.Orientation) if exif is not None else None
    except Exception:
        return image.size
    if isinstance(orientation, int) and orientation in _QUARTER_TURNS:
        return height, width
    return width, height


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_PNG_IMAGE_DATA = frozenset({b"IDAT", b"fdAT"})
# What the chunks before the image data may add up to before we give up rebuilding them: all the text
# Pillow accepts, and as much again for everything else (palettes, profiles, EXIF).
_PNG_MAX_HEADER = 2 * PngImagePlugin.MAX_TEXT_MEMORY


def _png_text_length(kind: bytes, data: bytes) -> int | None:
    """How many bytes a PNG text chunk's value decompresses to, as Pillow counts it; None when it is more
    than `PngImagePlugin.MAX_TEXT_CHUNK` (Pillow then refuses the whole file)."""
    rest = data.partition(b"\0")[2]  # after the keyword
    if kind == b"tEXt":
        return len(rest)
    if kind == b"zTXt":
        compressed = rest[1:]
    else:  # iTXt: compression flag and method, language tag, translated keyword, then the text
        if len(rest) < 2 or rest[0] == 0 or rest[1] != 0:
            return len(rest)  # uncompressed, or a method Pillow skips
        parts = rest[2:].split(b"\0", 2)
        if len(parts) < 3:
            return 0
        compressed = parts[2]
    decompressor = zlib.decompressobj()
    try:
        text = decompressor.decompress(compressed, PngImagePlugin.MAX_TEXT_CHUNK)
    except zlib.error:
        return 0  # Pillow drops a damaged chunk by itself
    return None if decompressor.unconsumed_tail else len(text)


def _png_without_oversized_text(fp: BinaryIO) -> tuple[bytes, tuple[str, ...]] | None:
    """The PNG's chunks up to its image data, minus the text chunks Pillow refuses to decompress, and
    those chunks' keywords; None if it is not a PNG, nothing was left out, or the chunks are damaged."""
    if fp.read(8) != _PNG_SIGNATURE:
        return None
    kept = [_PNG_SIGNATURE]
    skipped: list[str] = []
    total = text_total = 0
    while True:
        header = fp.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind in _PNG_IMAGE_DATA:
            kept.append(header)  # Pillow stops reading here
            break
        if kind in _PNG_TEXT_CHUNKS and length > PngImagePlugin.MAX_TEXT_MEMORY:
            # Longer than all the text Pillow accepts, compressed or not: skipped unread but for the keyword.
            skipped.append(fp.read(80).partition(b"\0")[0][:79].decode("latin-1"))
            fp.seek(length + 4 - 80, io.SEEK_CUR)
            continue
        total += length
        if total > _PNG_MAX_HEADER:
            return None
        body = fp.read(length + 4)  # the data and its CRC
        if len(body) < length + 4:
            return None
        if kind in _PNG_TEXT_CHUNKS:
            text_length = _png_text_length(kind, body[:length])
            if text_length is None or text_total + text_length > PngImagePlugin.MAX_TEXT_MEMORY:
                skipped.append(body[:length].partition(b"\0")[0][:79].decode("latin-1"))
                continue
            text_total += text_length
        kept.append(header + body)
    return (b"".join(kept), tuple(skipped)) if skipped else None


def _open(fp: BinaryIO, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns above its own limit and raises at twice it; the configured limit decides here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(fp)
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, max_pixels) from None


def read_image_info(fp: BinaryIO, *, max_pixels: int) -> ImageInfo:
    """Read size and embedded text from an image stream without decoding pixels.

    A PNG text chunk that decompresses to more than Pillow reads (a guard against decompression bombs,
    left as it is) makes Pillow refuse the whole file; such chunks are left out and named in
    `ImageInfo.skipped_text`, and the rest is read.

    :raises ImageTooLarge: when the header declares more than ``max_pixels`` pixels.
    :raises PIL.UnidentifiedImageError, OSError, ValueError, ...: when Pillow cannot parse the file.
    """
    start = fp.tell()
    skipped: tuple[str, ...] = ()
    try:
        image = _open(fp, max_pixels)
    except ValueError:
        fp.seek(start)
        trimmed = _png_without_oversized_text(fp)
        if trimmed is None:
            raise
        header, skipped = trimmed
        image = _open(io.BytesIO(header), max_pixels)
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(width * height, max_pixels)
        info = image.info
        text = {
            key: str(value) for key, value in info.items() if isinstance(key, str) and isinstance(value, str)
        }
        exif = _parse_exif(info.get("exif"))
        # As viewers show it: a search by width means the picture people see, not the stored pixels.
        shown_width, shown_height = _displayed_size(image, exif)
        return ImageInfo(
            format=image.format,
            width=shown_width,
            height=shown_height,
            text=text,
            user_comment=_user_comment(exif),
            comment=_decode_comment(info.get("comment")),
            skipped_text=skipped,
        )
