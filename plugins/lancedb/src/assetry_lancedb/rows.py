"""Asset <-> Arrow conversion for the LanceDB catalog, and the table schemas.

Batches are converted column by column: one Python pass gathers each field into a list, then Arrow builds
every column in C. Reading back goes the same way (one ``to_pylist`` per column, then one pass building
the records), with the usage counters of the narrow ``usage`` table folded in.

Embeddings are stored as float32, so a value that float32 cannot hold exactly comes back rounded.
``parameters`` and ``extra`` are stored as JSON text with sorted keys, so equal mappings give equal rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assetry.errors import ValidationError
from assetry.model import FLOAT32_RANGE, Asset, Kind, Links, Provenance, Status

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())

ASSETS = "assets"
USAGE = "usage"
META = "meta"
"""The catalog's tables: one row per record, its usage counters, and facts about the catalog."""

PRIMARY_KEY = "id"

# (column, Arrow type) of every stored field, in table order. `vector` and `search_text` are added by
# `assets_schema`, which knows the dimension.
_ASSET_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("label", pa.string()),
    ("kind", pa.string()),
    ("media_type", pa.string()),
    ("size", pa.int64()),
    ("digest", pa.string()),
    ("status", pa.string()),
    ("created_at", TIMESTAMP),
    ("created_by", pa.string()),
    ("tenant", pa.string()),
    ("project", pa.string()),
    ("tags", STRINGS),
    ("model", pa.string()),
    ("prompt", pa.string()),
    ("negative_prompt", pa.string()),
    ("seed", pa.int64()),
    ("parameters", pa.string()),
    ("agent_id", pa.string()),
    ("conversation_id", pa.string()),
    ("message_id", pa.string()),
    ("tool_call_id", pa.string()),
    ("task_id", pa.string()),
    ("parent_ids", STRINGS),
    ("reference_ids", STRINGS),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("duration", pa.float64()),
    ("extra", pa.string()),
    ("pinned", pa.bool_()),
)

SEARCH_TEXT = "search_text"
VECTOR = "vector"
RECORD = "record"

ASSET_COLUMNS: tuple[str, ...] = (PRIMARY_KEY, RECORD, VECTOR)
"""Columns read back to rebuild an `Asset`: the packed record and the embedding.

Every field also has its own column, for filters, ordering and GC, but a record is read back from the one
``record`` column (the fields as JSON): LanceDB reads each projected column of a row with its own random
access, so reading 10 search hits' 29 field columns took ~19 ms at 1M rows, and one column ~2 ms."""

USAGE_SCHEMA = pa.schema(
    [
        pa.field(PRIMARY_KEY, pa.string(), nullable=False),
        pa.field("last_used", TIMESTAMP),
        pa.field("access_count", pa.int64()),
    ]
)

META_SCHEMA = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string())])

Usage = tuple[datetime | None, int]
"""(last_used, access_count) of one asset."""


def assets_schema(dimension: int) -> pa.Schema:
    """The ``assets`` table: one column per `Asset` field, the embedding as a nullable fixed-size vector,
    and ``search_text`` (label, prompt and tags) for the full-text index."""
    return pa.schema(
        [
            pa.field(PRIMARY_KEY, pa.string(), nullable=False),
            *(pa.field(name, type_) for name, type_ in _ASSET_FIELDS),
            pa.field(VECTOR, pa.list_(pa.float32(), dimension), nullable=True),
            pa.field(SEARCH_TEXT, pa.string()),
            pa.field(RECORD, pa.string(), nullable=False),
        ]
    )


def vector_dimension(schema: pa.Schema) -> int | None:
    """The fixed vector length of an ``assets`` schema (None if the column is not a fixed-size list)."""
    type_ = schema.field(VECTOR).type
    return int(type_.list_size) if pa.types.is_fixed_size_list(type_) else None


def search_text(asset: Asset) -> str:
    """What full-text search sees of an asset: its label, prompt and tags."""
    parts = [asset.label, asset.provenance.prompt or "", *asset.tags]
    return " ".join(part for part in parts if part)


def _json(value: Mapping[str, Any]) -> str | None:
    return json.dumps(value, sort_keys=True, allow_nan=False, separators=(",", ":")) if value else None


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


# How each column is read off an Asset. Provenance and links are flattened into top-level columns.
_GETTERS: dict[str, Callable[[Asset], Any]] = {
    PRIMARY_KEY: lambda a: a.id,
    "label": lambda a: a.label,
    "kind": lambda a: a.kind.value,
    "media_type": lambda a: a.media_type,
    "size": lambda a: a.size,
    "digest": lambda a: a.digest,
    "status": lambda a: a.status.value,
    "created_at": lambda a: _utc(a.created_at),
    "created_by": lambda a: a.created_by,
    "tenant": lambda a: a.tenant,
    "project": lambda a: a.project,
    "tags": lambda a: list(a.tags),
    "model": lambda a: a.provenance.model,
    "prompt": lambda a: a.provenance.prompt,
    "negative_prompt": lambda a: a.provenance.negative_prompt,
    "seed": lambda a: a.provenance.seed,
    "parameters": lambda a: _json(a.provenance.parameters),
    "agent_id": lambda a: a.links.agent_id,
    "conversation_id": lambda a: a.links.conversation_id,
    "message_id": lambda a: a.links.message_id,
    "tool_call_id": lambda a: a.links.tool_call_id,
    "task_id": lambda a: a.links.task_id,
    "parent_ids": lambda a: list(a.links.parent_ids),
    "reference_ids": lambda a: list(a.links.reference_ids),
    "width": lambda a: a.width,
    "height": lambda a: a.height,
    "duration": lambda a: a.duration,
    "extra": lambda a: _json(a.extra),
    "pinned": lambda a: a.pinned,
    VECTOR: lambda a: a.embedding,
    SEARCH_TEXT: search_text,
}

_RECORD_FIELDS = tuple(name for name, _ in _ASSET_FIELDS)


_RECORD_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
"""One encoder for every record: `json.dumps` with options builds a new one per call."""


def encode_record(values: Mapping[str, Any]) -> str:
    """The ``record`` column of one row, as JSON: its field columns' values as `assets_table` stores them,
    except ``parameters`` and ``extra``, given as the mappings themselves (None when empty). Timestamps
    become ISO 8601 text; keys are sorted, so equal records give equal text."""
    packed = {name: values[name] for name in _RECORD_FIELDS}
    packed["created_at"] = packed["created_at"].isoformat()
    return _RECORD_JSON.encode(packed)


def _records(assets: Sequence[Asset], columns: Mapping[str, list[Any]]) -> list[str]:
    """The ``record`` column of a batch, from its already computed field columns."""
    fields = [(name, columns[name]) for name in _RECORD_FIELDS]
    records = []
    for i, asset in enumerate(assets):
        values = {name: column[i] for name, column in fields}
        values["parameters"] = asset.provenance.parameters or None
        values["extra"] = asset.extra or None
        records.append(encode_record(values))
    return records


# Errors name the Asset field, not the column.
_FIELD_NAMES = {VECTOR: "embedding", SEARCH_TEXT: "label"}


def assets_table(assets: Sequence[Asset], schema: pa.Schema) -> pa.Table:
    """One Arrow table holding a batch of assets, in the given (``assets_schema``) layout.

    Raises `ValidationError` naming the field when a value cannot be stored (an embedding of the wrong
    length, a string that is not valid Unicode).
    """
    computed = {f.name: [_GETTERS[f.name](a) for a in assets] for f in schema if f.name != RECORD}
    computed[RECORD] = _records(assets, computed)  # packed from the field columns, not read again
    columns = []
    for field in schema:
        values = computed[field.name]
        try:
            columns.append(pa.array(values, type=field.type))
        except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError) as exc:
            raise ValidationError(
                _FIELD_NAMES.get(field.name, field.name), f"cannot be stored: {exc}"
            ) from None
    check_float32(columns[schema.get_field_index(VECTOR)], "embedding")
    return pa.Table.from_arrays(columns, schema=schema)


def check_float32(vectors: pa.Array, field: str) -> None:
    """Vectors are stored as 32-bit floats, where a finite value beyond ~3.4e38 becomes infinity, and a
    record holding one could no longer be read back (`Asset` refuses infinities)."""
    if pc.all(pc.is_finite(vectors.flatten())).as_py() is False:
        raise ValidationError(field, FLOAT32_RANGE)


def usage_table(ids: Sequence[str], last_used: Sequence[datetime | None], counts: Sequence[int]) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.string()),
            pa.array([_utc(t) for t in last_used], type=TIMESTAMP),
            pa.array(counts, type=pa.int64()),
        ],
        schema=USAGE_SCHEMA,
    )


def usage_by_id(table: pa.Table) -> dict[str, Usage]:
    """The rows of the ``usage`` table as {id: (last_used, access_count)}."""
    ids = table.column(PRIMARY_KEY).to_pylist()
    last_used = table.column("last_used").to_pylist()
    counts = table.column("access_count").to_pylist()
    return {i: (_utc(t), c or 0) for i, t, c in zip(ids, last_used, counts, strict=True)}


def _tuple(values: Iterable[Any] | None) -> tuple[Any, ...]:
    return tuple(values) if values is not None else ()


def record_tenants(table: pa.Table) -> list[str | None]:
    """The tenant of each row of an ``assets`` query result, from its packed record."""
    return [json.loads(text)["tenant"] for text in table.column(RECORD).to_pylist()]


def table_to_assets(table: pa.Table, usage: Mapping[str, Usage] | None = None) -> list[Asset]:
    """Rebuild the records of an ``assets`` query result (rows in table order), usage folded in."""
    usage = usage or {}
    ids = table.column(PRIMARY_KEY).to_pylist()
    records = table.column(RECORD).to_pylist()
    vectors = table.column(VECTOR).to_pylist()
    assets = []
    for asset_id, text, vector in zip(ids, records, vectors, strict=True):
        r = json.loads(text)
        last_used, access_count = usage.get(asset_id, (None, 0))
        assets.append(
            Asset(
                id=asset_id,
                label=r["label"],
                kind=Kind(r["kind"]),
                media_type=r["media_type"],
                size=r["size"],
                digest=r["digest"],
                status=Status(r["status"]),
                created_at=datetime.fromisoformat(r["created_at"]).astimezone(UTC),
                created_by=r["created_by"],
                tenant=r["tenant"],
                project=r["project"],
                tags=_tuple(r["tags"]),
                provenance=Provenance(
                    model=r["model"],
                    prompt=r["prompt"],
                    negative_prompt=r["negative_prompt"],
                    seed=r["seed"],
                    parameters=r["parameters"] or {},
                ),
                links=Links(
                    agent_id=r["agent_id"],
                    conversation_id=r["conversation_id"],
                    message_id=r["message_id"],
                    tool_call_id=r["tool_call_id"],
                    task_id=r["task_id"],
                    parent_ids=_tuple(r["parent_ids"]),
                    reference_ids=_tuple(r["reference_ids"]),
                ),
                width=r["width"],
                height=r["height"],
                duration=r["duration"],
                extra=r["extra"] or {},
                embedding=tuple(vector) if vector is not None else None,
                pinned=bool(r["pinned"]),
                last_used=last_used,
                access_count=access_count,
            )
        )
    return assets
