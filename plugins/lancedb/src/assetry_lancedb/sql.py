"""Turning a `Filter` into a LanceDB (DataFusion SQL) ``WHERE`` clause.

Every value reaches the SQL as a literal built here: strings are single-quoted with embedded quotes
doubled (DataFusion treats backslashes literally, so nothing else needs escaping), numbers go through
``int``, enums through their value. Column names are constants of this module, never caller input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import attrs

from assetry.errors import ValidationError
from assetry.model import ORDERS, Filter, Kind, Status


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def string_list(values: Iterable[str]) -> str:
    """A SQL array literal of strings, for ``array_has_all`` / ``array_has_any``."""
    return "[" + ", ".join(quote(v) for v in values) + "]"


def in_list(column: str, values: Sequence[str]) -> str:
    """``column IN (...)``; an empty list matches nothing (SQL has no empty ``IN ()``)."""
    if not values:
        return "FALSE"
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def not_in_list(column: str, values: Sequence[str]) -> str | None:
    if not values:
        return None
    return f"{column} NOT IN ({', '.join(quote(v) for v in values)})"


def timestamp(value: datetime, field: str) -> str:
    """A timestamp literal with an explicit UTC offset (a naive datetime is taken as UTC)."""
    if not isinstance(value, datetime):
        raise ValidationError(field, f"expected a date/time, got {type(value).__name__}")
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"TIMESTAMP '{utc.isoformat(timespec='microseconds')}'"  # (years before 1000 padded to 4 digits)


def after_clause(ordering: Sequence[tuple[str, bool]], key: object, last_id: str) -> str:
    """Rows strictly after ``(key, last_id)`` in ``ordering`` (from `order_columns`: the order's column,
    then the id ascending): what follows a cursor's page."""
    after_id = f"id > {quote(last_id)}"
    column, ascending = ordering[0]
    if column == "id":
        return after_id
    if column == "created_at":
        if not isinstance(key, datetime):
            raise ValidationError("after", "is not a cursor for this order")
        literal = timestamp(key, "after")
    elif column == "size":
        literal = _integer(key, "after")
    elif isinstance(key, str):
        literal = quote(key)
    else:
        raise ValidationError("after", "is not a cursor for this order")
    beyond = ">" if ascending else "<"
    return f"({column} {beyond} {literal} OR ({column} = {literal} AND {after_id}))"


def _integer(value: object, field: str) -> str:
    """An integer literal that LanceDB reads as a signed 64-bit integer, the type of the columns compared
    (it reads a larger one as unsigned or floating point, and refuses the comparison)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"expected an integer, got {value!r}")
    if not -(2**63) <= value < 2**63:
        raise ValidationError(field, f"{value} is outside the signed 64-bit range")
    if value == -(2**63):  # (written as a negated 2**63, which does not fit)
        return f"({value + 1} - 1)"
    return str(value)


def _kinds(values: Iterable[Kind | str]) -> list[str]:
    try:
        return [Kind(v).value for v in values]
    except ValueError as exc:
        raise ValidationError("kind", str(exc)) from None


# Filter fields compared for equality with a string column of the same name.
_EQUALITY = (
    "project",
    "created_by",
    "agent_id",
    "conversation_id",
    "message_id",
    "tool_call_id",
    "task_id",
    "model",
    "digest",
    "label",
)


def filter_clauses(where: Filter) -> list[str]:
    """One SQL condition per set field of the filter (to be joined with AND)."""
    clauses: list[str] = []
    if where.tenant is not None:
        clauses.append(f"tenant = {quote(where.tenant)}")
    if where.ids is not None:
        clauses.append(in_list("id", list(where.ids)))
    if where.digests is not None:
        clauses.append(in_list("digest", list(where.digests)))
    if where.kind is not None:
        kinds = _kinds(where.kind)
        clauses.append(f"kind IN ({', '.join(quote(k) for k in kinds)})" if kinds else "FALSE")
    if where.media_type is not None:
        # starts_with rather than LIKE: no wildcard characters to escape in the prefix.
        clauses.append(f"starts_with(media_type, {quote(where.media_type)})")
    if where.tags:
        clauses.append(f"array_has_all(tags, {string_list(where.tags)})")
    if where.any_tags:
        clauses.append(f"array_has_any(tags, {string_list(where.any_tags)})")
    for name in _EQUALITY:
        value = getattr(where, name)
        if value is not None:
            clauses.append(f"{name} = {quote(value)}")
    if where.status is not None:
        try:
            status = Status(where.status).value
        except ValueError as exc:
            raise ValidationError("status", str(exc)) from None
        clauses.append(f"status = {quote(status)}")
    if where.parent_id is not None:
        clauses.append(f"array_has(parent_ids, {quote(where.parent_id)})")
    if where.seed is not None:
        clauses.append(f"seed = {_integer(where.seed, 'seed')}")
    if where.pinned is not None:
        clauses.append("pinned = true" if where.pinned else "pinned = false")
    if where.created_after is not None:
        clauses.append(f"created_at >= {timestamp(where.created_after, 'created_after')}")
    if where.created_before is not None:
        clauses.append(f"created_at < {timestamp(where.created_before, 'created_before')}")
    if where.min_size is not None:
        clauses.append(f"size >= {_integer(where.min_size, 'min_size')}")
    if where.max_size is not None:
        clauses.append(f"size <= {_integer(where.max_size, 'max_size')}")
    return clauses


# Filter fields whose column is not named like the field.
_FILTER_COLUMN = {
    "ids": "id",
    "digests": "digest",
    "any_tags": "tags",
    "parent_id": "parent_ids",
    "created_after": "created_at",
    "created_before": "created_at",
    "min_size": "size",
    "max_size": "size",
}


def filter_columns(where: Filter) -> set[str]:
    """The columns the conditions of `filter_clauses` read."""
    unset: tuple[object, ...] = (None, ())
    return {
        _FILTER_COLUMN.get(field.name, field.name)
        for field in attrs.fields(Filter)
        if getattr(where, field.name) not in unset
    }


def conjunction(*clauses: str | None) -> str | None:
    """AND of the given conditions (None when there are none)."""
    present = [c for c in clauses if c]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return " AND ".join(f"({c})" for c in present)


def where_clause(where: Filter, *extra: str | None) -> str | None:
    """The whole ``WHERE`` condition for a filter plus extra conditions, or None for no condition."""
    return conjunction(*filter_clauses(where), *extra)


def order_columns(order: str) -> list[tuple[str, bool]]:
    """(column, ascending) pairs for an order from `assetry.model.ORDERS`, always ending with the id."""
    if order not in ORDERS:
        raise ValidationError("order", f"{order!r} is not one of: {', '.join(ORDERS)}")
    column = order.lstrip("-")
    ascending = not order.startswith("-")
    columns = [(column, ascending)]
    if column != "id":
        columns.append(("id", True))
    return columns
