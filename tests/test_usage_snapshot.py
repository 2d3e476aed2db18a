"""Usage counters served from a per-version copy of the usage table (`assetry_lancedb.reads`): never older
than a query would be, in this process or after another one's fold; large tables are queried instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from assetry._testing.catalog import make_asset
from assetry.backends import CatalogSpec
from assetry.model import SearchQuery, UsageEvent
from assetry_lancedb import reads as reads_module
from assetry_lancedb.catalog import LanceCatalog
from assetry_lancedb.options import LanceOptions

DIMENSION = 4
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _catalog(path: Path) -> LanceCatalog:
    return LanceCatalog(CatalogSpec(str(path), DIMENSION, "cosine", LanceOptions(compact_every=0)))


def _uses(asset_id: str, count: int, at: datetime = T0) -> list[UsageEvent]:
    return [UsageEvent(asset_id=asset_id, action="read", at=at + timedelta(seconds=i)) for i in range(count)]


def _counts(catalog: LanceCatalog, ids: list[str]) -> dict[str, int]:
    return {i: a.access_count for i, a in catalog.get_many(ids).items()}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The version of every copy of the usage table read whole."""
    seen: list[int] = []
    real = reads_module._snapshot

    async def counting(table: Any, version: int) -> Any:
        seen.append(version)
        return await real(table, version)

    monkeypatch.setattr(reads_module, "_snapshot", counting)
    return seen


def test_copy_is_read_once_per_version_and_follows_this_process_writes(
    tmp_path: Path, loads: list[int]
) -> None:
    catalog = _catalog(tmp_path / "c")
    a, b = make_asset(embedding=(1.0, 0, 0, 0)), make_asset(embedding=(0, 1.0, 0, 0))
    catalog.insert([a, b])
    assert _counts(catalog, [a.id, b.id]) == {a.id: 0, b.id: 0}
    assert _counts(catalog, [a.id]) == {a.id: 0}
    assert len(loads) == 1, "no commit in between: the same copy"
    catalog.record_usage(_uses(a.id, 3))
    assert _counts(catalog, [a.id, b.id]) == {a.id: 3, b.id: 0}
    assert len(loads) == 2
    assert loads[1] > loads[0]
    hits = catalog.search(SearchQuery(vector=(1.0, 0, 0, 0), limit=2))
    assert {h.asset.id: h.asset.access_count for h in hits} == {a.id: 3, b.id: 0}
    assert catalog.get_many([a.id])[a.id].last_used == T0 + timedelta(seconds=2)
    assert len(loads) == 2


def test_another_process_fold_is_seen_at_the_next_read(tmp_path: Path) -> None:
    reader, writer = _catalog(tmp_path / "c"), _catalog(tmp_path / "c")
    asset = make_asset(embedding=(1.0, 0, 0, 0))
    writer.insert([asset])
    assert _counts(reader, [asset.id]) == {asset.id: 0}  # the reader holds a copy now
    writer.record_usage(_uses(asset.id, 2))
    assert _counts(reader, [asset.id]) == {asset.id: 2}
    writer.record_usage(_uses(asset.id, 1, at=T0 + timedelta(hours=1)))
    hits = reader.search(SearchQuery(vector=(1.0, 0, 0, 0), limit=1))
    assert hits[0].asset.access_count == 3
    assert hits[0].asset.last_used == T0 + timedelta(hours=1)


def test_a_table_too_large_to_keep_is_queried(
    tmp_path: Path, loads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads_module, "USAGE_SNAPSHOT_MAX_ROWS", 1)
    catalog = _catalog(tmp_path / "c")
    assets = [make_asset(embedding=(1.0, 0, 0, i / 10)) for i in range(3)]
    catalog.insert(assets)
    catalog.record_usage([e for i, asset in enumerate(assets[:2]) for e in _uses(asset.id, i + 1)])
    ids = [asset.id for asset in assets]
    assert _counts(catalog, ids) == dict(zip(ids, [1, 2, 0], strict=True))
    snapshot = catalog._reads._usage_snapshot
    assert snapshot is not None
    assert snapshot.table is None, "2 rows > 1: not kept"
    hits = catalog.search(SearchQuery(vector=(1.0, 0, 0, 0), limit=3))
    assert sorted(h.asset.access_count for h in hits) == [0, 1, 2]
