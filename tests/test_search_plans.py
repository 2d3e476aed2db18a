"""The LanceDB catalog's vector search plans (chosen for speed in docs/benchmarks.md) return what exact
search returns: the numpy path ranks and scores like LanceDB's own flat search, and the unfiltered path
for a single-tenant catalog never leaks another tenant's assets."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

from assetry._testing.catalog import make_asset
from assetry.backends import CatalogSpec
from assetry.model import Filter, SearchQuery
from assetry_lancedb import catalog as catalog_module
from assetry_lancedb import rows
from assetry_lancedb.catalog import LanceCatalog
from assetry_lancedb.options import LanceOptions

DIMENSION = 8


def _catalog(path: Path, metric: str, **options: Any) -> LanceCatalog:
    return LanceCatalog(CatalogSpec(str(path), DIMENSION, metric, LanceOptions(compact_every=0, **options)))


def _vectors(n: int, seed: int) -> list[tuple[float, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.uniform(-1, 1) for _ in range(DIMENSION)) for _ in range(n)]


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_numpy_exact_search_ranks_and_scores_like_lancedb(tmp_path: Path, metric: str) -> None:
    catalog = _catalog(tmp_path / "c", metric)
    assets = [
        make_asset(embedding=v, project="rare" if i % 10 == 0 else "common")
        for i, v in enumerate(_vectors(300, seed=1))
    ]
    catalog.insert(assets)
    for query in _vectors(5, seed=2):
        for clause in (None, "project = 'rare'"):
            ours = catalog._exact(list(query), clause, 7)
            flat = catalog._assets.search(list(query), vector_column_name=rows.VECTOR).distance_type(metric)
            flat = flat.bypass_vector_index()
            if clause:
                flat = flat.where(clause, prefilter=True)
            theirs = flat.limit(7).select([rows.PRIMARY_KEY, "_distance"]).to_arrow()
            assert ours.column(rows.PRIMARY_KEY).to_pylist() == theirs.column(rows.PRIMARY_KEY).to_pylist()
            assert ours.column("_distance").to_pylist() == pytest.approx(
                theirs.column("_distance").to_pylist(), rel=1e-4, abs=1e-5
            )
            assert ours.column_names == [*rows.ASSET_COLUMNS, "_distance"]


def test_exact_search_skips_rows_without_vectors_and_handles_no_match(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "c", "cosine")
    with_vector = make_asset(embedding=(1.0,) * DIMENSION, project="p")
    catalog.insert([with_vector, make_asset(project="p"), make_asset(embedding=(0.5,) * DIMENSION)])
    found = catalog._exact([1.0] * DIMENSION, "project = 'p'", 10)
    assert found.column(rows.PRIMARY_KEY).to_pylist() == [with_vector.id]
    assert catalog._exact([1.0] * DIMENSION, "project = 'none'", 10).num_rows == 0


def test_plans_follow_the_filter_and_every_plan_returns_the_exact_top_hits(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "c", "l2", ann_min_rows=200)
    vectors = _vectors(800, seed=3)
    assets = [
        make_asset(embedding=v, project="rare" if i % 100 == 0 else "common") for i, v in enumerate(vectors)
    ]
    catalog.insert(assets)
    assert catalog._plan(None)[0] == "exact"  # no index yet
    catalog.compact()
    assert catalog._plan(None)[0] == "ann-all"
    assert catalog._plan("project = 'common'")[0] == "ann"
    assert catalog._plan("project = 'rare'") == ("exact", 8)
    rare = [a for a in assets if a.project == "rare"]
    for query in vectors[:3]:
        expected = sorted(
            rare, key=lambda a: sum((x - y) ** 2 for x, y in zip(a.embedding or (), query, strict=True))
        )
        hits = catalog.search(SearchQuery(vector=query, filter=Filter(project="rare"), limit=3))
        assert [h.asset.id for h in hits] == [a.id for a in expected[:3]]
        # The query vector is itself a row: every plan must find it first.
        assert catalog.search(SearchQuery(vector=query, filter=Filter(tenant="default"), limit=1))[
            0
        ].asset.embedding


def test_unfiltered_path_for_one_tenant_never_returns_another_tenants_assets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = _catalog(tmp_path / "c", "l2", ann_min_rows=200)
    vectors = _vectors(400, seed=4)
    catalog.insert([make_asset(embedding=v, tenant="a") for v in vectors])
    catalog.compact()
    calls: list[str | None] = []
    real_ann = catalog._ann

    def spying_ann(vector: list[float], clause: str | None, limit: int, nprobes: int = 20) -> Any:
        calls.append(clause)
        return real_ann(vector, clause, limit, nprobes)

    monkeypatch.setattr(catalog, "_ann", spying_ann)
    real_plan = catalog._plan
    monkeypatch.setattr(catalog, "_plan", lambda clause: pytest.fail("a one-tenant store needs no plan"))
    hits = catalog.search(SearchQuery(vector=vectors[0], filter=Filter(tenant="a"), limit=10))
    assert len(hits) == 10
    assert calls == [None], "one unfiltered query, no row counts"
    monkeypatch.setattr(catalog, "_plan", real_plan)
    # Tenant b's rows arrive, and they are the nearest to every query.
    catalog.insert([make_asset(embedding=v, tenant="b") for v in vectors[:50]])
    calls.clear()
    for query in vectors[:5]:
        hits = catalog.search(SearchQuery(vector=query, filter=Filter(tenant="a"), limit=10))
        assert hits
        assert {h.asset.tenant for h in hits} == {"a"}
    assert calls[:2] == [None, "tenant = 'a'"], "the unfiltered query, then the filtered one"
    assert None not in calls[2:], "once another tenant is seen, queries go filtered from the start"


def test_ann_partitions_follow_the_square_root_up_to_a_cap() -> None:
    assert catalog_module.ann_partitions(1) == 1
    assert catalog_module.ann_partitions(10_000) == 100
    # Between 256 and 512, LanceDB's hierarchical k-means would split only some clusters: 256.
    assert catalog_module.ann_partitions(66_000) == 256
    assert catalog_module.ann_partitions(100_000) == 256
    assert catalog_module.ann_partitions(260_000) == 256
    assert catalog_module.ann_partitions(262_144) == 512
    assert catalog_module.ann_partitions(1_000_000) == 1_000
    assert catalog_module.ann_partitions(10_000_000) == catalog_module.ANN_MAX_PARTITIONS


def test_probes_grow_with_the_partitions_and_with_the_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = _catalog(tmp_path / "c", "l2", ann_min_rows=200)
    vectors = _vectors(400, seed=5)
    catalog.insert([make_asset(embedding=v, project="q" if i % 4 else "p") for i, v in enumerate(vectors)])
    catalog.compact()  # 400 rows: 20 partitions of 20
    probes: list[int] = []
    real_ann = catalog._ann
    monkeypatch.setattr(catalog, "_ann", lambda v, c, k, n=20: probes.append(n) or real_ann(v, c, k, n))
    monkeypatch.setattr(catalog_module, "ANN_MIN_CANDIDATES", 80)

    def search(**filters: Any) -> None:
        assert catalog.search(SearchQuery(vector=vectors[1], filter=Filter(**filters), limit=3))

    search()  # 80 candidates need 4 partitions of 20: ANN_NPROBES (12) is more
    search(project="p")  # a quarter of each partition: 16 partitions hold 80 of its rows
    catalog._write_meta({"ann_partitions": "1000"}, overwrite=True)  # as if built with 1,000
    catalog._vector_index_checked = -math.inf
    search()  # 0.4 rows per partition: 200 of them, more than 2% of 1,000
    monkeypatch.setattr(catalog_module, "ANN_MIN_CANDIDATES", 4)
    search()  # 10 partitions hold 4 rows: 2% of 1,000 is more
    monkeypatch.setattr(catalog_module, "ANN_MIN_CANDIDATES", 10_000)
    search()  # never more than there are
    assert probes == [12, 16, 200, 20, 1000]
    catalog._ann_rows = 0  # an index whose size LanceDB did not report: the base probes, not one
    assert catalog._nprobes(kept=0.25) == catalog_module.ANN_NPROBES


def test_probes_follow_the_partitions_the_index_was_built_with(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path / "c", "l2", ann_min_rows=200)
    catalog.insert([make_asset(embedding=v) for v in _vectors(400, seed=7)])
    catalog.compact()
    assert catalog._read_meta()["ann_partitions"] == "20"
    assert catalog._nprobes(kept=0.25) == 20  # 5 rows of the filter per partition: all 20 of them
    # An index recorded with 5 partitions (an older rule, or another row count): 5 probes, not 20.
    catalog._write_meta({"ann_partitions": "5"}, overwrite=True)
    catalog._vector_index_checked = -math.inf
    catalog._refresh_index_listing()
    assert catalog._nprobes(kept=0.25) == 5
    # Built before partitions were recorded: today's rule for the indexed rows.
    catalog._meta.delete("key = 'ann_partitions'")
    catalog._vector_index_checked = -math.inf
    catalog._refresh_index_listing()
    assert catalog._nprobes(kept=0.25) == 20


def test_filter_indexes_wait_for_a_large_catalog_then_serve_exact_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = _catalog(tmp_path / "c", "cosine", ann_min_rows=200)
    vectors = _vectors(600, seed=6)
    assets = [
        make_asset(embedding=v, project="rare" if i % 60 == 0 else "common", seed=i)
        for i, v in enumerate(vectors)
    ]
    # No cosine distance: never a hit, in LanceDB's flat search as in `_exact`.
    zero = make_asset(embedding=(0.0,) * DIMENSION, project="rare")
    catalog.insert([*assets, zero])
    monkeypatch.setattr(catalog_module, "FILTER_INDEX_MIN_ROWS", 1_000)
    catalog.compact()
    indexed = catalog._indexed_columns(catalog._assets)
    assert "project" not in indexed, "a small catalog is scanned, not indexed"
    monkeypatch.setattr(catalog_module, "FILTER_INDEX_MIN_ROWS", 500)
    catalog.compact()
    indexed = catalog._indexed_columns(catalog._assets)
    for column, kind in (("project", "BTree"), ("created_at", "BTree"), ("status", "Bitmap")):
        assert indexed[column] == kind
    assert indexed["parent_ids"] == "LabelList"
    assert catalog._narrowed_by_indexes(Filter(tenant="default", project="rare"))
    assert not catalog._narrowed_by_indexes(Filter(tenant="default")), "the tenant alone narrows nothing"
    assert not catalog._narrowed_by_indexes(Filter(project="rare", seed=3)), "seed has no index"

    rare = [a for a in assets if a.project == "rare"]
    assert catalog._plan("project = 'rare'")[0] == "exact"
    for query in vectors[0:180:60]:  # rare rows' own vectors: each is its own nearest
        expected = sorted(rare, key=lambda a: _cosine_distance(a.embedding or (), query))
        hits = catalog.search(SearchQuery(vector=query, filter=Filter(project="rare"), limit=20))
        assert [h.asset.id for h in hits] == [a.id for a in expected]
        assert hits[0].distance == pytest.approx(0.0, abs=1e-5)


def _cosine_distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return 1 - dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)


def _ann_cache_misses(catalog: LanceCatalog, query: tuple[float, ...]) -> int:
    """Index parts a vector query had to load (LanceDB's own count, from its analysed plan)."""
    import re

    plan = (
        catalog._assets.search(list(query), vector_column_name=rows.VECTOR)
        .distance_type("l2")
        .nprobes(catalog._nprobes())
        .limit(3)
        .analyze_plan()
    )
    found = re.search(r"ANNSubIndex:.*?index_cache_misses=(\d+)", plan)
    assert found, plan
    return int(found.group(1))


@pytest.mark.parametrize("prewarm", [False, True])
def test_prewarm_loads_the_vector_index_before_the_first_query(tmp_path: Path, prewarm: bool) -> None:
    vectors = _vectors(400, seed=8)
    catalog = _catalog(tmp_path / "c", "l2", ann_min_rows=200)
    catalog.insert([make_asset(embedding=v) for v in vectors])
    catalog.compact()
    catalog.close()
    reopened = _catalog(tmp_path / "c", "l2", ann_min_rows=200, prewarm_indexes=prewarm)
    reopened._has_vector_index()
    misses = _ann_cache_misses(reopened, vectors[0])
    assert (misses == 0) if prewarm else (misses > 0)
    reopened.close()
