"""Validation of what callers submit: every bad value is rejected with the field it came from."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetry import _convert
from assetry.errors import ValidationError
from assetry.model import ORDERS, AssetDraft, Cursor, Filter, Kind, filter_digest
from assetry.store import new_id


def draft(**data: Any) -> AssetDraft:
    return _convert.structure(data, AssetDraft)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"label": ""}, "label"),
        ({"label": "   "}, "label"),
        ({"label": "../etc/passwd"}, "label"),
        ({"label": "a/b.png"}, "label"),
        ({"label": "a\\b.png"}, "label"),
        ({"label": "bad\nname"}, "label"),
        ({"label": ".."}, "label"),
        ({"label": "x" * 300}, "label"),
        ({"kind": "picture"}, "kind"),
        ({"kind": 3}, "kind"),
        ({"media_type": "png"}, "media_type"),
        ({"width": -1}, "width"),
        ({"duration": float("nan")}, "duration"),
        ({"provenance": {"seed": "42"}}, "provenance.seed"),
        ({"provenance": {"seed": True}}, "provenance.seed"),
        ({"provenance": {"seed": 2**70}}, "provenance.seed"),
        ({"provenance": {"prompt": 5}}, "provenance.prompt"),
        ({"provenance": {"parameters": {"x": float("inf")}}}, "provenance.parameters"),
        ({"tags": ["ok", ""]}, "tags"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"extra": {"when": object()}}, "extra"),
        ({"extra": {"nested": {"s": {1, 2}}}}, "extra"),
        ({"extra": "not a mapping"}, "extra"),
        ({"embedding": [1.0, "x"]}, "embedding"),
        ({"embedding": [1.0, float("nan")]}, "embedding"),
        ({"embedding": [float("inf"), 1.0]}, "embedding"),
        ({"embedding": [float("inf"), float("-inf")]}, "embedding"),
        ({"embedding": [1e308, 1e308, float("nan")]}, "embedding"),
        ({"embedding": []}, "embedding"),
        ({"id": "has space"}, "id"),
        ({"id": "../x"}, "id"),
        ({"links": {"parent_ids": ["ok", "not ok"]}}, "links.parent_ids"),
        ({"tenant": ""}, "tenant"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"pinned": "yes"}, "pinned"),
    ],
)
def test_invalid_draft_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        draft(**data)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(field)


def test_embedding_values_must_fit_32_bit_floats() -> None:
    """They are stored as float32, where 1e39 would become infinity; the largest float32 is kept."""
    assert draft(embedding=[3.4e38, -3.4e38, 1.0]).embedding == (3.4e38, -3.4e38, 1.0)
    # (Values whose sum overflows even float64 are finite one by one, but beyond float32 too.)
    with pytest.raises(ValidationError, match="32-bit floats") as info:
        draft(embedding=[1e308, 1e308, -1.0])
    assert info.value.field == "embedding"


def test_valid_draft_keeps_values() -> None:
    d = draft(
        label="castle.png",
        kind="image",
        tags=["a", "b"],
        provenance={"prompt": "a castle", "seed": 7, "parameters": {"steps": 20}},
        links={"agent_id": "agent-1", "parent_ids": ["p1"]},
        extra={"nested": {"ok": [1, 2]}},
        embedding=[1, 2.5],
    )
    assert d.kind is Kind.IMAGE
    assert d.tags == ("a", "b")
    assert d.provenance.seed == 7
    assert d.links.parent_ids == ("p1",)
    assert d.embedding == (1.0, 2.5)


def test_kind_from_media_type() -> None:
    assert Kind.from_media_type("image/png") is Kind.IMAGE
    assert Kind.from_media_type("video/mp4") is Kind.VIDEO
    assert Kind.from_media_type("text/plain") is Kind.TEXT
    assert Kind.from_media_type("application/json") is Kind.TEXT
    assert Kind.from_media_type("application/jsonl") is Kind.TEXT  # JSON Lines: what agents log
    assert Kind.from_media_type("application/x-safetensors") is Kind.MODEL
    assert Kind.from_media_type("application/octet-stream") is Kind.FILE
    assert Kind.from_media_type(None) is Kind.FILE


def test_filter_structures_kinds_as_enum() -> None:
    f = _convert.structure({"kind": ["image"], "tags": ["x"]}, Filter)
    assert f.kind == (Kind.IMAGE,)


def test_new_ids_are_unique_and_short_prefixes_differ() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 for i in ids)
    # Ids made in the same instant must still differ in the first characters users see.
    assert len({i[:8] for i in ids}) > 990


def _key_for(order: str) -> st.SearchStrategy[Any]:
    column = order.lstrip("-")
    if column == "created_at":
        return st.datetimes(timezones=st.just(UTC))
    if column == "size":
        return st.integers(min_value=0, max_value=2**62)
    if column == "label":
        return st.text()
    return st.none()


@given(
    st.sampled_from(ORDERS).flatmap(lambda order: st.tuples(st.just(order), _key_for(order))),
    st.text(min_size=1),
    st.integers(min_value=0, max_value=2**40),
)
def test_a_cursor_survives_its_encoding(order_key: tuple[str, Any], asset_id: str, offset: int) -> None:
    order, key = order_key
    cursor = Cursor(order, key, asset_id, offset, filter_digest(Filter(tenant="t", tags=("a",))))
    assert Cursor.decode(cursor.encode()) == cursor


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=7),
    max_leaves=12,
)


def _decoded(token: str) -> Cursor | ValidationError:
    try:
        return Cursor.decode(token)
    except ValidationError as exc:
        return exc


_ALMOST_CURSORS = st.tuples(st.just(1), st.sampled_from(ORDERS), _JSON, _JSON, _JSON, _JSON).map(list)


@given(
    st.text()
    | (_JSON | _ALMOST_CURSORS).map(
        lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    )
)
def test_any_other_token_is_a_validation_error_on_after(token: str) -> None:
    """Text, base64 of any JSON, and of lists shaped like a cursor with any values: a cursor, or an
    error on ``after``, never another exception."""
    outcome = _decoded(token)
    assert isinstance(outcome, Cursor) or outcome.field == "after"


def test_the_filter_digest_tells_filters_apart() -> None:
    base = Filter(tenant="t", created_after=datetime(2026, 1, 1, tzinfo=UTC))
    assert filter_digest(base) == filter_digest(
        Filter(tenant="t", created_after=datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert filter_digest(base) != filter_digest(Filter(tenant="u", created_after=base.created_after))
    assert filter_digest(base) != filter_digest(Filter(tenant="t", kind=(Kind.IMAGE,)))
