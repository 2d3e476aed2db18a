"""Media type detection from the first bytes of a file, its name, and whether it reads as text.

Order, most trustworthy first: formats puremagic does not know or confuses (model weights, ZIP
containers, Ogg, ISO media brands), puremagic's signatures (except its guesses at text formats), the file
name, then a text check (plain text, or JSON when the whole document parses). Every step is a
pure function of the head bytes and the name, so it can be tested without files, and nothing here raises.
"""

from __future__ import annotations

import codecs
import json
import logging
import mimetypes
import re
from typing import Any

import puremagic

logger = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
SAFETENSORS = "application/x-safetensors"
GGUF = "application/x-gguf"

# Same shape the data model accepts for AssetDraft.media_type; a candidate that fails it is skipped.
_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")

# Safetensors headers are JSON describing tensors; real ones are kilobytes to a few megabytes. The
# bound keeps an arbitrary 8-byte prefix from passing as a length.
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

# GGUF versions so far are 1 to 3; the margin leaves room for new ones without admitting text.
_GGUF_MAX_VERSION = 16

# Python's built-in table (used without the host's /etc/mime.types, so results do not depend on the
# machine) lacks these, several of which are common among AI-generated assets.
_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".jxl": "image/jxl",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".jsonl": "application/jsonl",
    ".ndjson": "application/jsonl",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".ogv": "video/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".webm": "video/webm",
    ".safetensors": SAFETENSORS,
    ".gguf": GGUF,
    ".onnx": "application/x-onnx",
    ".pt": "application/x-pytorch",
    ".pth": "application/x-pytorch",
    ".ckpt": "application/x-pytorch",
}
_ENCODINGS = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}
_TYPES = mimetypes.MimeTypes()
for _ext, _type in _EXTRA_TYPES.items():
    _TYPES.add_type(_type, _ext)

# ISO base media files (MP4, MOV, AVIF, HEIC) share the `ftyp` box; puremagic ranks AVIF as MP4.
_FTYP_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"heim": "image/heic",
    b"heis": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"M4B ": "audio/mp4",
}

_WEAK_MATCH = 0.15

# Bytes that never occur in text files; a head containing them is binary.
_BINARY_CONTROL = frozenset(range(0x20)) - {0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x1B}


def normalize_media_type(value: str | None) -> str | None:
    """Lower-case, drop parameters (``; charset=...``); None unless it has the ``type/subtype`` shape."""
    if not value:
        return None
    cleaned = value.split(";", 1)[0].strip().lower()
    return cleaned if _MEDIA_TYPE_RE.match(cleaned) else None


def guess_from_name(name: str | None) -> str | None:
    """The media type the file name's extension suggests, or None."""
    if not name:
        return None
    media_type, encoding = _TYPES.guess_type(name, strict=False)
    if encoding:
        # "x.tar.gz" is a gzip file whatever it contains.
        return _ENCODINGS.get(encoding)
    return normalize_media_type(media_type)


def is_safetensors(head: bytes, size: int | None = None) -> bool:
    """Safetensors: an 8-byte little-endian header length, then that many bytes of JSON object."""
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    if not 2 <= length <= _SAFETENSORS_MAX_HEADER or head[8:9] != b"{":
        return False
    if size is not None and 8 + length > size:
        return False
    header = head[8 : 8 + length]
    if len(header) < length:
        # The header runs past the sniffed head: accept the start of a JSON object with a string key.
        return head[9:10] in (b'"', b"}") or head[9:10].isspace()
    try:
        return isinstance(json.loads(header), dict)
    except (ValueError, RecursionError):
        # RecursionError: nested deeper than Python's parser goes; real headers are a few levels deep.
        return False


def is_gguf(head: bytes) -> bool:
    """GGUF (llama.cpp weights): the magic ``GGUF`` followed by a uint32 version, little-endian (or
    big-endian, which llama.cpp also writes for big-endian hosts)."""
    if len(head) < 8 or head[:4] != b"GGUF":
        return False
    # The magic alone is four letters a note can start with ("GGUF quantization notes"); as a version,
    # text reads as hundreds of millions.
    version = head[4:8]
    return any(1 <= int.from_bytes(version, order) <= _GGUF_MAX_VERSION for order in ("little", "big"))


def _zip_type(head: bytes, name: str | None) -> str:
    # Office documents, PyTorch checkpoints and plain archives are all ZIP; puremagic calls every ZIP a
    # .docx. The name is the best witness; failing that, the first member paths.
    by_name = guess_from_name(name)
    if by_name is not None:
        return by_name
    for marker, media_type in (
        (b"word/", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (b"xl/", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (b"ppt/", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ):
        if b"[Content_Types].xml" in head and marker in head:
            return media_type
    return "application/zip"


def _ogg_type(head: bytes, name: str | None) -> str:
    # Ogg is a container; puremagic calls it application/ogg, whose kind is "file". Its first page holds
    # the first packet of the first stream, after a 27-byte header and a segment table whose length is
    # the header's last byte; a Theora packet there makes it video. Failing that, a video or audio type
    # from the name (.ogv, .opus; a skeleton stream may come first), else audio: most Ogg files are.
    first_packet = 27 + head[26] if len(head) > 26 else 27
    if head[first_packet : first_packet + 7] == b"\x80theora":
        return "video/ogg"
    by_name = guess_from_name(name)
    if by_name is not None and by_name.startswith(("audio/", "video/")):
        return by_name
    return "audio/ogg"


def _special(head: bytes, name: str | None, size: int | None) -> str | None:
    if is_gguf(head):
        return GGUF
    if is_safetensors(head, size):
        return SAFETENSORS
    if head[:4] == b"PK\x03\x04":
        return _zip_type(head, name)
    if head[:4] == b"OggS":
        return _ogg_type(head, name)
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12])
    return None


def _signature_index(rows: Any) -> tuple[tuple[int, int, frozenset[bytes]], ...]:
    """puremagic's signatures grouped by (offset, length), so one slice and one set lookup per group
    decide whether any of them matches."""
    groups: dict[tuple[int, int], set[bytes]] = {}
    for row in rows or ():
        if row.byte_match:
            groups.setdefault((row.offset, len(row.byte_match)), set()).add(bytes(row.byte_match))
    return tuple((offset, length, frozenset(sigs)) for (offset, length), sigs in groups.items())


def _by_first_byte(
    groups: tuple[tuple[int, int, frozenset[bytes]], ...],
) -> tuple[tuple[int, dict[int, tuple[tuple[int, frozenset[bytes]], ...]]], ...]:
    """Header groups keyed by offset, then by the signature's first byte: most heads match no first
    byte at most offsets, so one index per offset rules whole groups out."""
    by_offset: dict[int, dict[int, list[tuple[int, frozenset[bytes]]]]] = {}
    for offset, length, signatures in groups:
        for signature in signatures:
            firsts = by_offset.setdefault(offset, {})
            firsts.setdefault(signature[0], []).append((length, frozenset({signature})))
    return tuple(
        (offset, {first: tuple(entries) for first, entries in firsts.items()})
        for offset, firsts in sorted(by_offset.items())
    )


_HEADER_SIGNATURES = _signature_index(getattr(puremagic, "magic_header_array", None))
_HEADER_INDEX = _by_first_byte(_HEADER_SIGNATURES)
_FOOTER_SIGNATURES = _signature_index(getattr(puremagic, "magic_footer_array", None))
_FOOTER_SPAN = max((-offset for offset, _, _ in _FOOTER_SIGNATURES), default=0)


def _any_signature(head: bytes) -> bool:
    """Whether any of puremagic's header or footer signatures matches, as `puremagic.magic_string` reads
    them (footer signatures against the end of ``head``).

    puremagic tries its ~1,400 signatures one by one in Python (~1.4 ms per call, measured: the largest
    single cost of ingesting small files); this index answers the common "nothing matches" case in
    ~0.03 ms. When something matches, puremagic itself still decides.
    """
    if not _HEADER_SIGNATURES:
        return True  # puremagic's tables moved: let puremagic do all the work
    size = len(head)
    for offset, firsts in _HEADER_INDEX:
        if offset >= size:
            break
        for length, signatures in firsts.get(head[offset], ()):
            if head[offset : offset + length] in signatures:
                return True
    footer = head[-_FOOTER_SPAN:] if _FOOTER_SPAN else b""
    for offset, length, signatures in _FOOTER_SIGNATURES:
        end = offset + length
        if (footer[offset:end] if end else footer[offset:]) in signatures:
            return True
    return False


def _is_text_format(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type == "application/json"


def _puremagic(head: bytes, name: str | None) -> str | None:
    if not _any_signature(head):
        # puremagic would only offer its extension table, at a weak confidence, and the name's own
        # guess wins over that (below); ask puremagic only when the name says nothing.
        guessed = guess_from_name(name)
        if guessed is not None:
            return guessed
    try:
        matches = puremagic.magic_string(head, filename=name)
    except (puremagic.PureError, ValueError):
        return None
    except Exception as exc:  # a third-party parser on arbitrary bytes: never let it fail ingest
        logger.debug("puremagic failed on %s: %s", name or "<unnamed>", exc)
        return None
    for match in matches:
        media_type = normalize_media_type(match.mime_type)
        if media_type is not None:
            if _is_text_format(media_type):
                # puremagic guesses text formats from a few leading characters ("{" is JSON, "--- " a
                # patch, "MARC" plain text even in a binary file): the name, then the text check, know better.
                return None
            # puremagic's weakest matches come from scanning text with the name's extension in mind
            # ("text/plain" for notes.md); the extension table knows better then.
            if match.confidence < _WEAK_MATCH:
                return guess_from_name(name) or media_type
            return media_type
    return None


def _decode_text(head: bytes, truncated: bool) -> str | None:
    """The head as text if it is UTF-8 without binary control bytes, else None."""
    if any(byte in _BINARY_CONTROL for byte in head[:8192]):
        return None
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        # A head cut mid-file may end inside a multi-byte sequence; only a complete file must end clean.
        text = decoder.decode(head, final=not truncated)
    except UnicodeDecodeError:
        return None
    if any(ord(ch) in _BINARY_CONTROL for ch in text):
        return None
    return text


def sniff_media_type(head: bytes, *, name: str | None = None, size: int | None = None) -> str:
    """Best media type for content starting with ``head``.

    :param head: the first bytes (the whole content when it is small).
    :param name: the file name, if known (no directory needed).
    :param size: the total size, if known; JSON is only recognised when ``head`` holds all of it.
    """
    if not head:
        return guess_from_name(name) or OCTET_STREAM
    found = _special(head, name, size) or _puremagic(head, name) or guess_from_name(name)
    if found is not None:
        return found
    complete = size is None or size <= len(head)
    text = _decode_text(head, truncated=not complete)
    if text is None:
        return OCTET_STREAM
    if complete and text.lstrip()[:1] in ("{", "["):
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            # Too deeply nested to check here is not proof of JSON: it is still honest text.
            pass
        else:
            return "application/json"
    return "text/plain"
