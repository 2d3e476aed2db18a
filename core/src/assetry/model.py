"""The data model: what a caller submits (`AssetDraft`), what the catalog keeps (`Asset`), and the small
records that travel between the API, the hooks and the backends.

Everything here is an immutable attrs class. Validators run at construction, so an invalid object cannot
exist, and every check names the field it guards. Turning dictionaries (keyword arguments, JSON, TOML)
into these classes goes through the private converter in `assetry._convert`, which rejects wrong types
instead of coercing them.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from assetry._convert import is_unicode
from assetry.errors import ValidationError

SCHEMA_VERSION = 1
"""Version of the asset record layout. Catalog backends store it and migrate when it changes."""

DEFAULT_TENANT = "default"


class Kind(enum.StrEnum):
    """What an asset is. Derived from the media type when the caller does not say."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    EMBEDDING = "embedding"
    MODEL = "model"
    FONT = "font"
    FILE = "file"
    VALUE = "value"

    @classmethod
    def from_media_type(cls, media_type: str | None) -> Kind:
        if not media_type:
            return cls.FILE
        major, _, minor = media_type.partition("/")
        if major in ("image", "video", "audio", "font"):
            return cls(major)
        if major == "text" or minor in ("json", "jsonl", "x-ndjson", "x-yaml", "yaml", "toml", "xml"):
            return cls.TEXT
        if minor in ("x-safetensors", "x-gguf", "x-onnx", "x-pytorch"):
            return cls.MODEL
        if minor in ("x-font-ttf", "x-font-otf", "font-woff"):
            return cls.FONT
        return cls.FILE


class Status(enum.StrEnum):
    """Lifecycle state of an asset. Only AVAILABLE assets have content; PENDING ones are never evicted."""

    AVAILABLE = "available"
    PENDING = "pending"
    FAILED = "failed"


# ---------------------------------------------------------------------------------------------------------
# Field validators. Each raises ValidationError naming the attrs field it is attached to.

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_DIGEST_RE = re.compile(r"^(?P<algo>[a-z0-9]+):(?P<hex>[0-9a-f]{32,128})$")
_LABEL_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
MAX_LABEL_LENGTH = 255
MAX_TAG_LENGTH = 128


def _fail(attribute: attrs.Attribute[Any], reason: str) -> None:
    raise ValidationError(attribute.name, reason)


def _check_id(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not _ID_RE.match(value):
        _fail(attribute, f"{value!r} is not a valid id (1-128 of letters, digits, '.', '_', ':', '-')")


def _check_ids(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for item in value:
        if not _ID_RE.match(item):
            _fail(attribute, f"{item!r} is not a valid asset id")


def check_label(value: str, field: str = "label") -> None:
    """A label is a display name and the default file name on export: never a path."""
    if not isinstance(value, str):
        raise ValidationError(field, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_LABEL_LENGTH:
        raise ValidationError(field, f"is {len(value)} characters long; the limit is {MAX_LABEL_LENGTH}")
    if _LABEL_FORBIDDEN.search(value):
        raise ValidationError(field, f"{value!r} contains a path separator or a control character")
    if value in (".", ".."):
        raise ValidationError(field, f"{value!r} is not a usable name")


def _check_label(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_label(value, attribute.name)


def _check_optional_text(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and "\x00" in value:
        _fail(attribute, "contains a NUL character")


def check_name(value: str, field: str) -> None:
    """Names used as filter keys (tenant, project, created_by, links): non-empty, one line."""
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > 256 or any(ch in value for ch in "\x00\n\r"):
        raise ValidationError(field, f"{value[:40]!r} is not a valid name (one line, at most 256 characters)")


def _check_name(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_name(value, attribute.name)


def _check_tags(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for tag in value:
        if not tag.strip():
            _fail(attribute, "tags must not be empty")
        if len(tag) > MAX_TAG_LENGTH or any(ch in tag for ch in "\x00\n\r,"):
            _fail(
                attribute, f"{tag[:40]!r} is not a valid tag (one line, no comma, <= {MAX_TAG_LENGTH} chars)"
            )


def _check_media_type(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not _MEDIA_TYPE_RE.match(value):
        _fail(attribute, f"{value!r} is not a media type like 'image/png'")


def check_digest(value: str, field: str = "digest") -> None:
    if not _DIGEST_RE.match(value):
        raise ValidationError(field, f"{value!r} is not a digest like 'blake3:<hex>'")


def _check_digest(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        check_digest(value, attribute.name)


def _check_non_negative(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (value < 0 or (isinstance(value, float) and not math.isfinite(value))):
        _fail(attribute, f"must be a finite number >= 0, got {value!r}")


def _check_seed(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    # Seeds are stored as signed 64-bit integers; common generators use unsigned 32/64-bit seeds.
    if value is not None and not (-(2**63) <= value < 2**63):
        _fail(attribute, f"{value} does not fit in a signed 64-bit integer")


def check_json(value: Any, field: str) -> None:
    """Metadata must survive a JSON round trip unchanged: str keys, no NaN, no objects."""
    if isinstance(value, Mapping) and not value:
        return  # most records carry no parameters or extra: ~4 us of json.dumps each, twice per record
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"cannot be stored as JSON: {exc}") from None
    if not is_unicode(text):
        raise ValidationError(field, "holds text that is not valid Unicode (undecodable bytes?)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping):
                check_json(item, f"{field}.{key}")


def _check_json(_: object, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    check_json(value, attribute.name)


FLOAT32_MAX = 3.4028234663852886e38
"""Embeddings are stored as 32-bit floats: a finite value beyond this would become infinity."""
FLOAT32_RANGE = f"has values beyond what 32-bit floats hold (|x| <= {FLOAT32_MAX:.4g})"


def check_float32_range(values: Sequence[float], field: str) -> None:
    if max(map(abs, values)) > FLOAT32_MAX:
        raise ValidationError(field, FLOAT32_RANGE)


def _check_new_embedding(
    obj: object, attribute: attrs.Attribute[Any], value: tuple[float, ...] | None
) -> None:
    """A draft's embedding: also within what 32-bit floats hold, checked before its blob is written."""
    _check_embedding(obj, attribute, value)
    if value is not None:
        check_float32_range(value, attribute.name)


def _check_embedding(_: object, attribute: attrs.Attribute[Any], value: tuple[float, ...] | None) -> None:
    if value is None:
        return
    if not value:
        _fail(attribute, "must not be empty")
    # A finite sum means every value is finite (an infinity or a NaN carries into it); only a sum that
    # is not (finite values may overflow it) needs the value-by-value check. 1.8 us against 5.5 us for
    # 384 values, paid for every record built, read back ones included.
    if not math.isfinite(sum(value)) and not all(map(math.isfinite, value)):
        _fail(attribute, "contains NaN or infinity")


def _aware(_: object, attribute: attrs.Attribute[Any], value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        _fail(attribute, "must be timezone-aware")


def _tuple_of_str(value: Any) -> Any:
    """Accept any iterable of strings (list, set, generator) but not a bare string (a common slip)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _frozen_mapping(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------------------
# The records.


@attrs.frozen(kw_only=True)
class Provenance:
    """How an asset was generated. All optional; filled by the caller or by ingest plugins that read the
    parameters image tools embed in their files."""

    model: str | None = attrs.field(default=None, validator=_check_optional_text)
    prompt: str | None = attrs.field(default=None, validator=_check_optional_text)
    negative_prompt: str | None = attrs.field(default=None, validator=_check_optional_text)
    seed: int | None = attrs.field(default=None, validator=_check_seed)
    parameters: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, validator=_check_json
    )


@attrs.frozen(kw_only=True)
class Links:
    """Who and what produced an asset, and which assets it was made from."""

    agent_id: str | None = attrs.field(default=None, validator=_check_name)
    conversation_id: str | None = attrs.field(default=None, validator=_check_name)
    message_id: str | None = attrs.field(default=None, validator=_check_name)
    tool_call_id: str | None = attrs.field(default=None, validator=_check_name)
    task_id: str | None = attrs.field(default=None, validator=_check_name)
    parent_ids: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_ids)
    reference_ids: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_ids)


# Field names of the nested records, so flat keyword arguments (`prompt=`, `agent_id=`) can be routed.
PROVENANCE_FIELDS = frozenset(a.name for a in attrs.fields(Provenance))
LINK_FIELDS = frozenset(a.name for a in attrs.fields(Links))


@attrs.frozen(kw_only=True)
class AssetDraft:
    """What a caller submits with content. Everything is optional: the label defaults to the file name, the
    media type and kind are sniffed, the digest and size come from the content.

    ``id`` may be given for assets that need a stable, app-defined id (built-ins); otherwise one is made.
    """

    id: str | None = attrs.field(default=None, validator=_check_id)
    label: str | None = attrs.field(default=None, validator=_check_label)
    kind: Kind | None = None
    media_type: str | None = attrs.field(default=None, validator=_check_media_type)
    created_by: str | None = attrs.field(default=None, validator=_check_name)
    tenant: str = attrs.field(default=DEFAULT_TENANT, validator=_check_name)
    project: str | None = attrs.field(default=None, validator=_check_name)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_tags)
    provenance: Provenance = attrs.field(factory=Provenance)
    links: Links = attrs.field(factory=Links)
    width: int | None = attrs.field(default=None, validator=_check_non_negative)
    height: int | None = attrs.field(default=None, validator=_check_non_negative)
    duration: float | None = attrs.field(default=None, validator=_check_non_negative)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, validator=_check_json)
    embedding: tuple[float, ...] | None = attrs.field(default=None, validator=_check_new_embedding)
    pinned: bool = False


@attrs.frozen(kw_only=True)
class Asset:
    """One catalog record. ``last_used`` and ``access_count`` are the folded usage counters; they may lag
    the most recent accesses by one flush of the usage buffer."""

    id: str = attrs.field(validator=_check_id)
    label: str = attrs.field(validator=_check_label)
    kind: Kind
    media_type: str = attrs.field(validator=_check_media_type)
    size: int = attrs.field(validator=_check_non_negative)
    digest: str | None = attrs.field(validator=_check_digest)
    status: Status = Status.AVAILABLE
    created_at: datetime = attrs.field(factory=utcnow, validator=_aware)
    created_by: str | None = attrs.field(default=None, validator=_check_name)
    tenant: str = attrs.field(default=DEFAULT_TENANT, validator=_check_name)
    project: str | None = attrs.field(default=None, validator=_check_name)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_tags)
    provenance: Provenance = attrs.field(factory=Provenance)
    links: Links = attrs.field(factory=Links)
    width: int | None = attrs.field(default=None, validator=_check_non_negative)
    height: int | None = attrs.field(default=None, validator=_check_non_negative)
    duration: float | None = attrs.field(default=None, validator=_check_non_negative)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, validator=_check_json)
    embedding: tuple[float, ...] | None = attrs.field(default=None, validator=_check_embedding, repr=False)
    pinned: bool = False
    last_used: datetime | None = attrs.field(default=None, validator=_aware)
    access_count: int = attrs.field(default=0, validator=_check_non_negative)

    @property
    def protected(self) -> bool:
        """Never evicted by quota GC: pinned, or not (yet) available."""
        return self.pinned or self.status is not Status.AVAILABLE


# Fields a caller may change with `Store.update`; content, identity and usage are not among them.
UPDATABLE_FIELDS = (
    frozenset(
        {
            "label",
            "kind",
            "media_type",
            "created_by",
            "project",
            "tags",
            "width",
            "height",
            "duration",
            "extra",
            "embedding",
            "pinned",
        }
    )
    | PROVENANCE_FIELDS
    | LINK_FIELDS
)


@attrs.frozen
class UsageEvent:
    """One access to an asset's content (or an explicit use such as 'embed' or 'transform')."""

    asset_id: str
    action: str
    at: datetime
    actor: str | None = None


@attrs.frozen(kw_only=True)
class Filter:
    """Scalar filters shared by `find`, `search` and `similar`. Unset fields do not filter.

    ``tags`` matches assets carrying every listed tag; ``any_tags`` those carrying at least one.
    ``media_type`` matches a prefix (``image/`` or ``image/png``).
    """

    tenant: str | None = None
    ids: tuple[str, ...] | None = None
    kind: tuple[Kind, ...] | None = None
    media_type: str | None = None
    tags: tuple[str, ...] = ()
    any_tags: tuple[str, ...] = ()
    project: str | None = None
    status: Status | None = None
    created_by: str | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    tool_call_id: str | None = None
    task_id: str | None = None
    parent_id: str | None = None
    model: str | None = None
    seed: int | None = None
    digest: str | None = None
    digests: tuple[str, ...] | None = None
    label: str | None = None
    pinned: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_size: int | None = None
    max_size: int | None = None


ORDERS = ("created_at", "-created_at", "size", "-size", "label", "-label", "id")
"""Orders `find` accepts. Every order ends with the id, so pages are stable."""


@attrs.frozen
class Page:
    """One page of `find` results. ``next_offset`` is None on the last page; so is ``next_cursor``, the
    token that continues after this page (``find(after=page.next_cursor)``, with the same filters and
    order), which stays fast however deep the page and is not shifted by assets added or deleted
    meanwhile."""

    items: list[Asset]
    offset: int
    limit: int
    total: int
    next_cursor: str | None = None

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.items)
        return end if end < self.total else None


@attrs.frozen
class Cursor:
    """Where a page of `find` ended: the last asset's value of the order's column (``key``; None for
    the order ``"id"``) and its id, the offset after it, and a digest of the filters it was made for.
    A catalog continues strictly after ``(key, id)`` in the order; one that cannot (the default
    `Catalog.find_after`) uses the offset."""

    order: str
    key: datetime | int | str | None
    id: str
    offset: int
    filters: str

    @classmethod
    def after(cls, last: Asset, order: str, offset: int, where: Filter) -> Cursor:
        column = order.lstrip("-")
        key = None if column == "id" else getattr(last, column)
        return cls(order, key, last.id, offset, filter_digest(where))

    def encode(self) -> str:
        key = self.key.isoformat() if isinstance(self.key, datetime) else self.key
        raw = json.dumps([1, self.order, key, self.id, self.offset, self.filters], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor in ``token``; a `ValidationError` on ``after`` if it is not one `encode` made."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, order, key, asset_id, offset, filters = json.loads(raw)
            if version != 1 or order not in ORDERS or not isinstance(asset_id, str):
                raise ValueError(order)
            if not isinstance(offset, int) or offset < 0 or not isinstance(filters, str):
                raise ValueError(offset)
            column = order.lstrip("-")
            if column == "created_at":
                key = datetime.fromisoformat(key)
            wrong_size = column == "size" and (isinstance(key, bool) or not isinstance(key, int))
            if wrong_size or (column == "label" and not isinstance(key, str)):
                raise ValueError(key)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise ValidationError("after", "is not a cursor from Page.next_cursor") from None
        return cls(order, key, asset_id, offset, filters)


def filter_digest(where: Filter) -> str:
    """A short digest of a filter's values: a cursor made for other filters is refused, not misread."""
    values = attrs.asdict(where, recurse=True, value_serializer=lambda _i, _a, v: _plain(v))
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


@attrs.frozen
class Hit:
    """A search result. ``score`` is higher for better matches; ``distance`` is set for vector matches."""

    asset: Asset
    score: float
    distance: float | None = None


@attrs.frozen(kw_only=True)
class SearchQuery:
    """Full text and/or vector search with filters. With both, results are fused by reciprocal rank."""

    text: str | None = None
    vector: tuple[float, ...] | None = None
    filter: Filter = attrs.field(factory=Filter)
    limit: int = 10
    exclude_ids: tuple[str, ...] = ()


@attrs.frozen
class StoredBlob:
    """Result of storing content: its digest and size, and whether bytes were written (False on dedup)."""

    digest: str
    size: int
    written: bool


@attrs.frozen
class LruRow:
    """What quota GC needs to know of an evictable asset."""

    asset_id: str
    digest: str | None
    size: int
    last_used: datetime
    label: str
    """For the eviction report and log, so GC need not read whole records."""
    references: int
    """How many records (of any tenant, any status) referenced ``digest`` when the scan began."""


@attrs.frozen
class StorageUsage:
    """Byte counts as the catalog sees them. ``stored_bytes`` counts each digest once; ``logical_bytes``
    counts every asset (what the store would take without deduplication)."""

    assets: int
    blobs: int
    stored_bytes: int
    logical_bytes: int


@attrs.frozen
class Eviction:
    asset_id: str
    label: str
    size: int
    last_used: datetime
    freed: int
    """Bytes this eviction frees: the blob size if no other live asset shares it, else 0."""


@attrs.frozen
class GcReport:
    quota: int
    before: int
    after: int
    dry_run: bool
    evicted: list[Eviction]
    spared: list[str]
    """Ids that plugins vetoed through `assetry_evict`, and ids pinned while GC ran."""

    @property
    def freed(self) -> int:
        return self.before - self.after

    @property
    def over_quota(self) -> bool:
        """True when everything left is protected and the store is still above the quota."""
        return self.after > self.quota


@attrs.frozen
class StoreStats:
    usage: StorageUsage
    by_kind: dict[str, int]
    storage: str
    catalog: str
    plugins: list[str]
