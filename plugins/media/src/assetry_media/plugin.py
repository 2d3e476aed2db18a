"""assetry plugin: media enrichment at ingest.

Fills what the caller left unset: the media type (sniffed from the content), the kind, an image's width
and height, and the generation parameters image tools embed (prompt, negative prompt, seed, model and the
rest). Configured by the ``[media]`` table (`MediaOptions`). A file this plugin cannot read never fails
ingest: it logs a warning naming the file and returns what it knows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from PIL import UnidentifiedImageError

from assetry import hookimpl
from assetry.errors import ValidationError
from assetry.model import Kind
from assetry_media import generation, images, sniff

if TYPE_CHECKING:
    import click

    from assetry.content import Content
    from assetry.model import AssetDraft

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 178_956_970
"""Pillow's own hard limit (twice `PIL.Image.MAX_IMAGE_PIXELS`)."""


def _positive(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ValidationError(attribute.name, f"must be at least 1, got {value}")


@attrs.frozen(kw_only=True)
class MediaOptions:
    """The ``[media]`` configuration table."""

    sniff: bool = True
    """Detect the media type from the content (else from the file name only)."""
    extract_generation: bool = True
    """Read generation parameters (prompt, seed, model, ...) embedded in image files."""
    max_pixels: int = attrs.field(default=DEFAULT_MAX_PIXELS, validator=_positive)
    """Images declaring more pixels are treated as decompression bombs: only their media type is kept.
    Pillow's own limit (`PIL.Image.MAX_IMAGE_PIXELS`) applies as well."""


@hookimpl
def assetry_config_sections() -> dict[str, type[Any]]:
    return {"media": MediaOptions}


@hookimpl
def assetry_cli_commands(cli: click.Group) -> None:
    # Imported here: the demo pulls in the command-line helpers, which ingest does not need.
    from assetry_media.demo import demo

    cli.add_command(demo)


def _options(config: Any) -> MediaOptions:
    sections = getattr(config, "sections", None)
    options = sections.get("media") if isinstance(sections, Mapping) else None
    if isinstance(options, MediaOptions):
        return options
    if isinstance(options, Mapping):
        # Normally core has structured the table already; a raw table is still honoured.
        return MediaOptions(**options)
    return MediaOptions()


def _shown(content: Content) -> str:
    return content.name or "<unnamed>"


def _media_type(content: Content, options: MediaOptions) -> str | None:
    if not options.sniff:
        return sniff.guess_from_name(content.name)
    try:
        head = content.head()
    except OSError as exc:
        logger.warning("%s: cannot read content to detect its type: %s", _shown(content), exc.strerror or exc)
        return sniff.guess_from_name(content.name)
    try:
        return sniff.sniff_media_type(head, name=content.name, size=content.size)
    except Exception as exc:  # the sniffer is written not to raise; this is the last line of defence
        fallback = sniff.guess_from_name(content.name) or sniff.OCTET_STREAM
        logger.warning(
            "%s: cannot detect the media type (%s: %s); using %s",
            _shown(content),
            type(exc).__name__,
            exc,
            fallback,
        )
        return fallback


def _describe(exc: Exception, content: Content) -> str:
    """The error for a log line, without the local path Pillow puts in some messages."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow can read, or a damaged one"
    text = f"{type(exc).__name__}: {exc}"
    path = content.local_path
    if path is not None:
        text = text.replace(str(path), _shown(content)).replace(str(path.parent), "...")
    return text


def _image_fields(content: Content, options: MediaOptions) -> dict[str, Any]:
    try:
        with content.open() as fp:
            info = images.read_image_info(fp, max_pixels=options.max_pixels)
    except images.ImageTooLarge as exc:
        logger.warning(
            "%s: not reading image metadata: %s (possible decompression bomb)", _shown(content), exc
        )
        return {}
    except Exception as exc:  # Pillow raises many types on hostile input; none may fail ingest.
        logger.warning("%s: cannot read image metadata: %s", _shown(content), _describe(exc, content))
        return {}
    if info.skipped_text:
        logger.warning(
            "%s: skipped PNG text chunks that decompress to more than Pillow reads: %s",
            _shown(content),
            ", ".join(repr(keyword) for keyword in info.skipped_text),
        )
    fields: dict[str, Any] = {"width": info.width, "height": info.height}
    if options.extract_generation:
        try:
            found = generation.from_image_text(
                info.text, user_comment=info.user_comment, comment=info.comment
            )
        except Exception as exc:  # the parsers are written not to raise; this is the last line of defence
            logger.warning("%s: cannot parse generation parameters: %s", _shown(content), exc)
            found = None
        if found is not None:
            fields["generation"] = found
    return fields


def _unset(draft_fields: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """Entries of ``found`` whose key the caller did not set (None or empty)."""
    return {k: v for k, v in found.items() if draft_fields.get(k) in (None, "", (), {})}


@hookimpl
def assetry_ingest(draft: AssetDraft, content: Content, config: Any) -> dict[str, Any] | None:
    """Sniff the media type, read image dimensions and embedded generation parameters.

    Returns flat draft field names; only fields the caller left unset are returned.
    """
    options = _options(config)
    found: dict[str, Any] = {}
    media_type = draft.media_type
    if media_type is None:
        media_type = _media_type(content, options)
        if media_type is not None:
            found["media_type"] = media_type
    if media_type is not None and draft.kind is None:
        found["kind"] = Kind.from_media_type(media_type)

    image: dict[str, Any] = {}
    if media_type is not None and media_type.startswith("image/") and media_type not in images.NOT_RASTER:
        image = _image_fields(content, options)
    info: generation.GenerationInfo | None = image.pop("generation", None)
    found.update(_unset({"width": draft.width, "height": draft.height}, image))

    if info is not None:
        provenance = draft.provenance
        given = {
            "prompt": provenance.prompt,
            "negative_prompt": provenance.negative_prompt,
            "seed": provenance.seed,
            "model": provenance.model,
        }
        candidates = {
            "prompt": info.prompt,
            "negative_prompt": info.negative_prompt,
            "seed": info.seed,
            "model": info.model,
        }
        found.update(_unset(given, {k: v for k, v in candidates.items() if v is not None}))
        parameters = {k: v for k, v in info.parameters.items() if k not in provenance.parameters}
        if parameters:
            found["parameters"] = parameters
        extra = {
            k: v for k, v in {"generator": info.generator, **info.summary}.items() if k not in draft.extra
        }
        if extra:
            found["extra"] = extra
    return found or None
