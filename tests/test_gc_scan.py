"""Quota GC's scan in the LanceDB catalog (`LanceCatalog.lru_scan`, `assetry_lancedb.lru`): the LRU order,
reference counts and byte counts against a plain Python model, on real catalogs on disk; and the long-list
paths of `delete` and `digest_references`."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assetry._testing.catalog import BASE_TIME, fake_digest, make_asset
from assetry.backends import CatalogSpec
from assetry.model import Asset, Status, StorageUsage, UsageEvent
from assetry_lancedb import lru
from assetry_lancedb.catalog import ID_CHUNK, LanceCatalog
from assetry_lancedb.options import LanceOptions


def _open(path: Path) -> LanceCatalog:
    return LanceCatalog(CatalogSpec(str(path), 4, "cosine", LanceOptions()))


def _version(path: Path, table: str) -> int:
    return int(lancedb.connect(str(path)).open_table(table).version)


def _colliding_digest(seed: int, tail: str) -> str:
    """A digest ending in ``tail``: digests that differ only before their last 8 hex digits share a key."""
    return fake_digest(seed)[: -len(tail)] + tail


def _model_lru(assets: list[Asset], used: dict[str, Any], tenant: str | None) -> list[tuple[Any, ...]]:
    references = Counter(a.digest for a in assets if a.digest)
    rows = [
        (used.get(a.id, a.created_at), a.id, a.digest, a.size, a.label, references[a.digest] * bool(a.digest))
        for a in assets
        if not a.pinned and a.status is Status.AVAILABLE and tenant in (None, a.tenant)
    ]
    return sorted(rows)


def _model_usage(assets: list[Asset], tenant: str | None) -> StorageUsage:
    scoped = [a for a in assets if tenant in (None, a.tenant)]
    largest: dict[str, int] = {}
    for a in scoped:
        if a.digest:
            largest[a.digest] = max(largest.get(a.digest, 0), a.size)
    return StorageUsage(len(scoped), len(largest), sum(largest.values()), sum(a.size for a in scoped))


def test_lru_scan_matches_a_model_over_several_slices(tmp_path: Path) -> None:
    """More candidates than the first slice holds, ties on the slice boundaries, shared digests (across
    tenants, with pinned and failed records), digests whose keys collide, usage older than creation."""
    rng = random.Random(5)
    times = [BASE_TIME + timedelta(minutes=rng.randrange(300)) for _ in range(40)]  # many ties
    assets: list[Asset] = []
    for i in range(lru.FIRST_SLICE + 2500):
        roll = rng.random()
        if roll < 0.15 and assets:
            digest = rng.choice(assets).digest  # shared blob
        elif roll < 0.2:
            digest = _colliding_digest(i, "0badcafe")  # same key, different digests
        else:
            digest = fake_digest(("gc", i))
        status = rng.choice([Status.AVAILABLE] * 8 + [Status.FAILED, Status.PENDING])
        assets.append(
            make_asset(
                id=f"a{rng.randrange(10**6):06d}-{i}",
                digest=None if status is Status.PENDING else digest,
                size=rng.randrange(1, 10_000),
                created_at=rng.choice(times),
                tenant=rng.choice(["A", "A", "B"]),
                pinned=rng.random() < 0.05,
                status=status,
            )
        )
    catalog = _open(tmp_path / "c")
    catalog.insert(assets)
    used = {a.id: rng.choice(times) - timedelta(days=rng.choice([0, 1])) for a in rng.sample(assets, 900)}
    catalog.record_usage([UsageEvent(asset_id, "read", at) for asset_id, at in used.items()])

    for tenant in (None, "A", "B"):
        usage, rows = catalog.lru_scan(tenant=tenant)
        got = [(r.last_used, r.asset_id, r.digest, r.size, r.label, r.references) for r in rows]
        assert got == _model_lru(assets, used, tenant)
        assert usage == _model_usage(assets, tenant) == catalog.storage_usage(tenant=tenant)
    expected = [row[1] for row in _model_lru(assets, used, "B")]
    assert [r.asset_id for r in catalog.iter_lru(tenant="B")] == expected


def test_lru_scan_of_an_empty_catalog(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    usage, rows = catalog.lru_scan()
    assert list(rows) == []
    assert usage == StorageUsage(0, 0, 0, 0) == catalog.storage_usage()


def test_an_iterator_taken_partly_yields_the_first_rows(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    assets = [make_asset(created_at=BASE_TIME + timedelta(seconds=i % 7)) for i in range(50)]
    catalog.insert(assets)
    _, rows = catalog.lru_scan()
    first = [next(rows).asset_id for _ in range(10)]
    assert first == [row[1] for row in _model_lru(assets, {}, None)][:10]


_strings = st.none() | st.text(alphabet="0123456789abcdefg:é", max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(_strings, max_size=60), st.data())
def test_digest_groups_group_exactly(values: list[str | None], data: st.DataObject) -> None:
    """Any strings (short ones, non-hex, equal key tails), in any chunking, even a sliced chunk."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    large = data.draw(st.booleans())
    kind = pa.large_string() if large else pa.string()
    chunks = [pa.array(["pad", *values[a:b]], kind).slice(1) for a, b in itertools.pairwise(bounds)]
    digests = pa.chunked_array(chunks, kind)
    sizes = pa.chunked_array([pa.array([len(v or "") * 3 + 1 for v in values], pa.int64())])
    groups = lru.DigestGroups(digests, sizes)

    counts = Counter(v for v in values if v is not None)
    rows = np.arange(len(values))
    assert groups.references(rows).tolist() == [counts[v] if v is not None else 0 for v in values]
    same = [[j for j, w in enumerate(values) if w == v] for v in values]
    for i, v in enumerate(values):
        assert (groups.group[i] == -1) == (v is None)
        if v is not None:
            assert np.flatnonzero(groups.group == groups.group[i]).tolist() == same[i]
    largest = {v: len(v) * 3 + 1 for v in counts}
    logical = sum(len(v or "") * 3 + 1 for v in values)
    assert groups.usage() == StorageUsage(len(values), len(counts), sum(largest.values()), logical)
    scope = np.array([i % 2 == 0 for i in range(len(values))], dtype=bool)
    scoped = [v for v, keep in zip(values, scope, strict=True) if keep]
    kept = {v for v in scoped if v is not None}
    assert groups.usage(scope) == StorageUsage(
        len(scoped), len(kept), sum(largest[v] for v in kept), sum(len(v or "") * 3 + 1 for v in scoped)
    )


@given(st.lists(st.lists(st.text(max_size=3), max_size=5), max_size=5), st.data())
def test_take_from_chunks_matches_arrow(chunks: list[list[str]], data: st.DataObject) -> None:
    column = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    total = sum(len(c) for c in chunks)
    rows = data.draw(st.lists(st.integers(0, max(total - 1, 0)), max_size=8)) if total else []
    index = np.array(rows, dtype=np.int64)
    assert lru.take(column, index).to_pylist() == column.take(pa.array(index, pa.int64())).to_pylist()


# -- long id lists -------------------------------------------------------------------------------------------


def test_deleting_many_unknown_ids_makes_no_commit_and_finds_a_late_known_one(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    kept, gone = make_asset(), make_asset()
    catalog.insert([kept, gone])
    catalog.record_usage([UsageEvent(gone.id, "read", BASE_TIME)])
    unknown = [f"unknown-{i}" for i in range(ID_CHUNK + 500)]
    before = (_version(tmp_path / "c", "assets"), _version(tmp_path / "c", "usage"))
    catalog.delete(unknown)
    assert (_version(tmp_path / "c", "assets"), _version(tmp_path / "c", "usage")) == before
    # The one stored id comes after the first ID_CHUNK: found by the second look, deleted from both tables.
    catalog.delete([*unknown, gone.id])
    assert set(catalog.get_many([kept.id, gone.id])) == {kept.id}
    after = (_version(tmp_path / "c", "assets"), _version(tmp_path / "c", "usage"))
    assert after == (before[0] + 1, before[1] + 1)


def test_digest_references_of_many_digests(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    shared = fake_digest("shared")
    catalog.insert([make_asset(digest=shared), make_asset(digest=shared, tenant="other"), make_asset()])
    asked = [shared, *(fake_digest(("absent", i)) for i in range(ID_CHUNK + 10))]
    counts = catalog.digest_references(asked)
    assert counts[shared] == 2
    assert set(counts) == set(asked)
    assert sum(counts.values()) == 2


@pytest.mark.parametrize("victims", [10, ID_CHUNK + 200])
def test_gc_removes_rows_and_counts_as_before_whatever_the_list_length(tmp_path: Path, victims: int) -> None:
    """Short deletes look ids up by query, long ones scan: both leave the same catalog."""
    catalog = _open(tmp_path / "c")
    assets = [make_asset() for _ in range(victims + 50)]
    catalog.insert(assets)
    doomed = [a.id for a in assets[:victims]]
    catalog.delete(doomed)
    assert catalog.storage_usage() == _model_usage(assets[victims:], None)
    assert catalog.digest_references([a.digest or "" for a in assets[: victims + 1]]) == {
        **{a.digest or "": 0 for a in assets[:victims]},
        assets[victims].digest or "": 1,
    }
