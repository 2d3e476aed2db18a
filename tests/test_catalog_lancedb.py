"""The LanceDB catalog: the catalog contract, plus what only LanceDB has (commits per batch, versions,
indexes, other processes, options)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import lancedb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetry import _convert
from assetry._testing.catalog import BASE_TIME, CatalogContract, MakeCatalog, fake_digest, make_asset
from assetry.backends import Catalog, CatalogSpec
from assetry.errors import AssetNotFound, ConfigError, ValidationError
from assetry.model import (
    SCHEMA_VERSION,
    Asset,
    Filter,
    Kind,
    Links,
    Provenance,
    SearchQuery,
    Status,
    UsageEvent,
    check_label,
)
from assetry_lancedb import plugin, rows
from assetry_lancedb.catalog import LanceCatalog, _location
from assetry_lancedb.options import LanceOptions


def _open(path: Path, dimension: int = 4, metric: str = "cosine", **options: Any) -> LanceCatalog:
    return LanceCatalog(CatalogSpec(str(path), dimension, metric, LanceOptions(**options)))


def _table(path: Path, name: str) -> Any:
    """A table as a separate LanceDB connection (another process) sees it now."""
    return lancedb.connect(str(path)).open_table(name)


def _version(path: Path, table: str) -> int:
    return int(_table(path, table).version)


class TestLanceCatalog(CatalogContract):
    @pytest.fixture
    def make_catalog(self, tmp_path: Path) -> Iterator[MakeCatalog]:
        opened: list[LanceCatalog] = []

        def make(dimension: int = 4, *, metric: str = "cosine", name: str = "main") -> LanceCatalog:
            catalog = _open(tmp_path / name, dimension, metric)
            opened.append(catalog)
            return catalog

        yield make
        for catalog in opened:
            catalog.close()


# -- commits -------------------------------------------------------------------------------------------------


def test_a_batch_insert_is_one_commit(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    before = _version(tmp_path / "c", "assets")
    catalog.insert([make_asset(embedding=(1.0, 0.0, 0.0, float(i))) for i in range(500)])
    assert _version(tmp_path / "c", "assets") == before + 1
    assert catalog.count(Filter()) == 500


def test_record_usage_is_one_commit_on_usage_and_none_on_assets(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    assets = [make_asset() for _ in range(200)]
    catalog.insert(assets)
    events = [UsageEvent(a.id, "read", BASE_TIME + timedelta(seconds=i)) for i, a in enumerate(assets * 3)]
    assets_before = _version(tmp_path / "c", "assets")
    usage_before = _version(tmp_path / "c", "usage")
    catalog.record_usage(events)
    assert _version(tmp_path / "c", "assets") == assets_before
    assert _version(tmp_path / "c", "usage") == usage_before + 1
    catalog.record_usage(events[:10])
    assert _version(tmp_path / "c", "usage") == usage_before + 2
    assert catalog.get_many([assets[0].id])[assets[0].id].access_count == 4


def test_unchanged_rows_are_not_rewritten(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    assets = [make_asset(embedding=(0.1, 0.2, 0.3, 0.4)) for _ in range(20)]
    catalog.upsert(assets)
    version = _version(tmp_path / "c", "assets")
    catalog.upsert(assets)
    catalog.update(assets)
    # The embedding went through float32; reading it back and writing it again changes nothing.
    catalog.update(list(catalog.get_many([a.id for a in assets]).values()))
    assert _version(tmp_path / "c", "assets") == version
    catalog.update([attrs.evolve(assets[0], label="changed.png"), *assets[1:]])
    assert _version(tmp_path / "c", "assets") == version + 1


def test_deleting_unknown_ids_makes_no_commit(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    catalog.insert([make_asset()])
    before = (_version(tmp_path / "c", "assets"), _version(tmp_path / "c", "usage"))
    catalog.delete(["unknown-1", "unknown-2"])
    assert (_version(tmp_path / "c", "assets"), _version(tmp_path / "c", "usage")) == before


def test_update_of_an_unknown_id_raises_and_writes_nothing(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    known = make_asset()
    catalog.insert([known])
    version = _version(tmp_path / "c", "assets")
    with pytest.raises(AssetNotFound):
        catalog.update([attrs.evolve(known, label="x.png"), make_asset(id="unknown")])
    assert _version(tmp_path / "c", "assets") == version
    assert catalog.get_many([known.id])[known.id] == known


def test_upsert_with_an_id_twice_in_the_batch_fails(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    a = make_asset()
    with pytest.raises(ValidationError) as info:
        catalog.upsert([a, attrs.evolve(a, label="twin.png")])
    assert info.value.field == "id"
    assert catalog.count(Filter()) == 0


def test_insert_keeps_usage_carried_by_the_records(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    used = make_asset(last_used=BASE_TIME, access_count=7)
    fresh = make_asset()
    catalog.insert([used, fresh])
    got = catalog.get_many([used.id, fresh.id])
    assert got[used.id] == used
    assert got[fresh.id] == fresh


def test_a_string_arrow_cannot_store_is_a_validation_error(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    with pytest.raises(ValidationError) as info:
        catalog.insert([make_asset(prompt="lone surrogate \ud800")])
    assert info.value.field == "prompt"
    assert catalog.count(Filter()) == 0


# -- opening -------------------------------------------------------------------------------------------------


def test_reopening_with_another_dimension_is_a_config_error(tmp_path: Path) -> None:
    _open(tmp_path / "c", dimension=4).insert([make_asset(embedding=(1.0, 0.0, 0.0, 0.0))])
    with pytest.raises(ConfigError) as info:
        _open(tmp_path / "c", dimension=8)
    assert info.value.field == "vectors.dimension"
    assert "created with 4" in str(info.value)
    with pytest.raises(ConfigError) as info:
        _open(tmp_path / "c", dimension=4, metric="l2")
    assert info.value.field == "vectors.metric"
    assert _open(tmp_path / "c", dimension=4).count(Filter()) == 1


def test_a_catalog_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    _open(tmp_path / "c")
    meta = _table(tmp_path / "c", "meta")
    meta.update(where="key = 'schema_version'", values={"value": str(SCHEMA_VERSION + 1)})
    with pytest.raises(ConfigError) as info:
        _open(tmp_path / "c")
    assert info.value.field == "catalog.url"


def test_a_catalog_without_packed_records_is_refused(tmp_path: Path) -> None:
    """Catalogs written before records were packed into one column (pre-release) cannot be read."""
    old = rows.assets_schema(4)
    db = lancedb.connect(str(tmp_path / "c"))
    db.create_table("assets", schema=old.remove(old.get_field_index("record")))
    with pytest.raises(ConfigError) as info:
        _open(tmp_path / "c")
    assert info.value.field == "catalog.url"
    assert "export" in str(info.value)
    assert db.list_tables().tables == ["assets"], "no table created"
    assert _version(tmp_path / "c", "assets") == 1, "nothing written (not even its primary key)"


def test_reads_see_this_process_writes_whatever_the_consistency_interval(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c", read_consistency_seconds=3600)
    a = make_asset(label="before.png", embedding=(1.0, 0.0, 0.0, 0.0))
    assert catalog.get_many([a.id]) == {}
    catalog.insert([a])
    assert catalog.get_many([a.id]) == {a.id: a}
    catalog.update([attrs.evolve(a, label="after.png")])
    assert catalog.get_many([a.id])[a.id].label == "after.png"
    catalog.record_usage([UsageEvent(a.id, "read", BASE_TIME)])
    assert catalog.get_many([a.id])[a.id].access_count == 1
    assert [h.asset.access_count for h in catalog.search(SearchQuery(vector=(1.0, 0.0, 0.0, 0.0)))] == [1]
    catalog.delete([a.id])
    assert catalog.get_many([a.id]) == {}
    catalog.close()
    catalog.close()  # closing twice is harmless


def test_the_tables_declare_their_primary_key(tmp_path: Path) -> None:
    _open(tmp_path / "c")
    db = lancedb.connect(str(tmp_path / "c"))
    for name, key in (("assets", "id"), ("usage", "id"), ("meta", "key")):
        field = db.open_table(name).schema.field(key)
        assert not field.nullable
        assert b"lance-schema:unenforced-primary-key:position" in (field.metadata or {})


def test_describe_shows_neither_the_full_path_nor_credentials(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "deep" / "catalog")
    assert catalog.describe() == "lancedb:local…/catalog"
    assert str(tmp_path) not in catalog.describe()
    uri, description = _location("s3://KEYID:SECRET@bucket/some/path/catalog?region=x")
    assert uri.startswith("s3://")
    assert description == "lancedb:s3…/catalog"
    assert _location("file:///srv/data/cat")[1] == "lancedb:local…/cat"


def test_spec_errors_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        LanceCatalog(CatalogSpec(str(tmp_path / "c"), 4, "manhattan"))
    assert info.value.field == "vectors.metric"
    with pytest.raises(ConfigError) as info:
        LanceCatalog(CatalogSpec(str(tmp_path / "c"), 0, "cosine"))
    assert info.value.field == "vectors.dimension"
    with pytest.raises(ConfigError) as info:
        LanceCatalog(CatalogSpec(str(tmp_path / "c"), 4, "cosine", options={"compact_every": 3}))
    assert info.value.field == "catalog.options"


# -- other instances and processes ---------------------------------------------------------------------------


def test_two_instances_see_each_others_commits(tmp_path: Path) -> None:
    one = _open(tmp_path / "c")
    two = _open(tmp_path / "c")
    assert two.count(Filter()) == 0
    a = make_asset(prompt="shared harbor", embedding=(1.0, 0.0, 0.0, 0.0))
    one.insert([a])
    assert two.get_many([a.id]) == {a.id: a}
    assert two.count(Filter()) == 1
    assert [h.asset.id for h in two.search(SearchQuery(text="harbor"))] == [a.id]
    two.record_usage([UsageEvent(a.id, "read", BASE_TIME)])
    assert one.get_many([a.id])[a.id].access_count == 1
    with pytest.raises(ValidationError):
        two.insert([a])
    one.delete([a.id])
    assert two.get_many([a.id]) == {}


_UPSERT_SCRIPT = textwrap.dedent(
    """
    import sys
    from assetry.backends import CatalogSpec
    from assetry._testing.catalog import make_asset
    from assetry_lancedb.catalog import LanceCatalog
    catalog = LanceCatalog(CatalogSpec(sys.argv[1], 4, "cosine"))
    catalog.upsert([make_asset(id=f"same-{i}", label=f"{sys.argv[2]}.png") for i in range(50)])
    """
)


def test_concurrent_upserts_of_the_same_new_ids_do_not_duplicate_rows(tmp_path: Path) -> None:
    path = tmp_path / "c"
    _open(path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _UPSERT_SCRIPT, str(path), f"w{i}"], env=env, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()[-2000:]
    catalog = _open(path)
    ids = [a.id for a in catalog.find(Filter(), order="id", limit=1000, offset=0)]
    assert len(ids) == 50
    assert len(set(ids)) == 50


# -- compaction and indexes ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:optimize\\(cleanup_older_than=0\\)")
def test_compact_drops_old_versions_and_keeps_data(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c", compact_every=0, cleanup_older_than_seconds=0)
    assets = [make_asset(prompt=f"item {i}") for i in range(40)]
    for i in range(0, 40, 4):
        catalog.insert(assets[i : i + 4])
    catalog.record_usage([UsageEvent(a.id, "read", BASE_TIME) for a in assets])
    assert len(_table(tmp_path / "c", "assets").list_versions()) > 10
    before = catalog.find(Filter(), order="id", limit=100, offset=0)
    catalog.compact()
    table = _table(tmp_path / "c", "assets")
    assert len(table.list_versions()) <= 2
    assert catalog.find(Filter(), order="id", limit=100, offset=0) == before
    assert len(catalog.search(SearchQuery(text="item", limit=100))) == 40
    indexed = {tuple(index.columns): index.index_type for index in table.list_indices()}
    assert {("id",), ("digest",), ("kind",), ("tenant",), ("tags",), ("search_text",)} <= set(indexed)
    assert indexed[("search_text",)] == "FTS"


@pytest.mark.filterwarnings("ignore:optimize\\(cleanup_older_than=0\\)")
def test_compaction_runs_every_n_commits(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c", compact_every=5, cleanup_older_than_seconds=0)
    for _ in range(4):
        catalog.insert([make_asset()])
    assert len(_table(tmp_path / "c", "assets").list_versions()) > 4
    catalog.insert([make_asset()])
    assert len(_table(tmp_path / "c", "assets").list_versions()) <= 2
    assert catalog.count(Filter()) == 5


def test_vector_index_is_built_past_ann_min_rows_and_search_stays_exact_where_it_matters(
    tmp_path: Path,
) -> None:
    import random

    rng = random.Random(7)
    dimension = 8
    vectors = [tuple(rng.uniform(-1, 1) for _ in range(dimension)) for _ in range(600)]
    assets = [
        make_asset(embedding=v, project="rare" if i % 50 == 0 else "common") for i, v in enumerate(vectors)
    ]
    catalog = _open(tmp_path / "c", dimension=dimension, metric="l2", ann_min_rows=300, compact_every=0)
    catalog.insert(assets)
    catalog.compact()
    table = _table(tmp_path / "c", "assets")
    assert any(index.columns == ["vector"] for index in table.list_indices())

    stored = {a.id: a.embedding for a in catalog.find(Filter(), order="id", limit=1000, offset=0)}

    def exact(query: tuple[float, ...], ids: set[str], k: int) -> list[str]:
        def distance(asset_id: str) -> float:
            vector = stored[asset_id]
            assert vector is not None
            return float(sum((x - y) ** 2 for x, y in zip(vector, query, strict=True)))

        return sorted(ids, key=distance)[:k]

    rare = {a.id for a in assets if a.project == "rare"}
    for asset in assets[:5]:
        query = asset.embedding
        assert query is not None
        # Broad query: the ANN index with refinement still puts the exact match first.
        hits = catalog.search(SearchQuery(vector=query, limit=5))
        assert hits[0].asset.id == asset.id
        # Selective filter: exact search over the matching rows, so the ranking is exactly right.
        filtered = catalog.search(SearchQuery(vector=query, filter=Filter(project="rare"), limit=5))
        assert [h.asset.id for h in filtered] == exact(query, rare, 5)


# -- options and registration --------------------------------------------------------------------------------


def test_options_are_validated_naming_the_key() -> None:
    with pytest.raises(ValidationError) as info:
        LanceOptions(compact_every=-1)
    assert info.value.field == "compact_every"
    with pytest.raises(ConfigError) as info:
        _convert.structure(
            {"ann_min_rows": "many"}, LanceOptions, error=ConfigError, prefix="catalog.options"
        )
    assert info.value.field == "catalog.options.ann_min_rows"
    with pytest.raises(ConfigError) as info:
        _convert.structure({"compactevery": 3}, LanceOptions, error=ConfigError, prefix="catalog.options")
    assert info.value.field == "catalog.options.compactevery"
    for not_a_bool in ("yes", 1):
        with pytest.raises(ConfigError) as info:
            _convert.structure(
                {"prewarm_indexes": not_a_bool}, LanceOptions, error=ConfigError, prefix="catalog.options"
            )
        assert info.value.field == "catalog.options.prewarm_indexes"
    options = _convert.structure(
        {"storage_options": {"region": "eu-west-1"}, "read_consistency_seconds": 2.5}, LanceOptions
    )
    assert options.storage_options == {"region": "eu-west-1"}
    assert options.read_consistency_seconds == 2.5
    assert "eu-west-1" not in repr(options)


def test_the_plugin_registers_the_lancedb_backend(tmp_path: Path) -> None:
    (backend,) = plugin.assetry_catalog_backends()
    assert backend.name == "lancedb"
    assert backend.options_type is LanceOptions
    catalog = backend.factory(CatalogSpec(str(tmp_path / "c"), 4, "cosine", LanceOptions()))
    catalog.insert([make_asset()])
    assert catalog.count(Filter()) == 1


def test_writes_retry_commit_conflicts_only(tmp_path: Path) -> None:
    catalog = _open(tmp_path / "c")
    failures = iter(
        [RuntimeError("Retryable commit conflict for version 7"), OSError("Too many concurrent writers")]
    )

    def flaky() -> str:
        error = next(failures, None)
        if error:
            raise error
        return "done"

    assert catalog._retry("test", flaky) == "done"
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("Schema error: no such column")

    with pytest.raises(ValueError, match="no such column"):
        catalog._retry("test", broken)
    assert len(calls) == 1


# -- Asset <-> Arrow round trip ------------------------------------------------------------------------------

_names = st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20).filter(
    lambda s: bool(s.strip())
)
_texts = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)


def _valid_label(value: str) -> bool:
    try:
        check_label(value)
    except ValidationError:
        return False
    return True


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_json_objects = st.dictionaries(_texts, _json_values, max_size=4)
_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,30}", fullmatch=True)
_tags = st.lists(_names.filter(lambda t: "," not in t and len(t) <= 128), max_size=4).map(tuple)
_times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
_int64 = st.integers(0, 2**63 - 1)
_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)

_assets = st.builds(
    Asset,
    id=_ids,
    label=_names.filter(_valid_label),
    kind=st.sampled_from(Kind),
    media_type=st.from_regex(r"[a-z]{1,8}/[a-z0-9][a-z0-9.+-]{0,10}", fullmatch=True),
    size=_int64,
    digest=st.none() | st.integers(0, 10**6).map(fake_digest),
    status=st.sampled_from(Status),
    created_at=_times,
    created_by=st.none() | _names,
    tenant=_names,
    project=st.none() | _names,
    tags=_tags,
    provenance=st.builds(
        Provenance,
        model=st.none() | _texts,
        prompt=st.none() | _texts,
        negative_prompt=st.none() | _texts,
        seed=st.none() | st.integers(-(2**63), 2**63 - 1),
        parameters=_json_objects,
    ),
    links=st.builds(
        Links,
        agent_id=st.none() | _names,
        conversation_id=st.none() | _names,
        message_id=st.none() | _names,
        tool_call_id=st.none() | _names,
        task_id=st.none() | _names,
        parent_ids=st.lists(_ids, max_size=3).map(tuple),
        reference_ids=st.lists(_ids, max_size=3).map(tuple),
    ),
    width=st.none() | _int64,
    height=st.none() | _int64,
    duration=st.none() | st.floats(min_value=0, allow_infinity=False, allow_nan=False),
    extra=_json_objects,
    embedding=st.none() | st.lists(_float32, min_size=4, max_size=4).map(tuple),
    pinned=st.booleans(),
    last_used=st.none() | _times,
    access_count=st.integers(0, 2**40),
)


@given(st.lists(_assets, max_size=5, unique_by=lambda a: a.id))
def test_asset_to_row_to_asset_round_trips(assets: list[Asset]) -> None:
    table = rows.assets_table(assets, rows.assets_schema(4))
    usage = {a.id: (a.last_used, a.access_count) for a in assets}
    assert rows.table_to_assets(table, usage) == assets
    for asset in rows.table_to_assets(table, usage):
        assert asset.created_at.utcoffset() == timedelta(0)
    assert rows.record_tenants(table) == [a.tenant for a in assets]
    bare = rows.table_to_assets(table)
    assert [(a.last_used, a.access_count) for a in bare] == [(None, 0)] * len(assets)


def test_every_filter_field_becomes_a_condition() -> None:
    """A Filter field the SQL builder forgets would silently match everything."""
    from datetime import UTC, datetime

    import attrs

    from assetry.model import Filter, Kind, Status
    from assetry_lancedb import sql

    samples = {
        "kind": (Kind.IMAGE,),
        "status": Status.AVAILABLE,
        "seed": 1,
        "pinned": True,
        "min_size": 1,
        "max_size": 2,
        "created_after": datetime(2024, 1, 1, tzinfo=UTC),
        "created_before": datetime(2025, 1, 1, tzinfo=UTC),
        "tags": ("t",),
        "any_tags": ("t",),
        "ids": ("a",),
        "digests": ("blake3:" + "0" * 64,),
    }
    columns = set(rows.assets_schema(4).names)
    for field in attrs.fields(Filter):
        value = samples.get(field.name, "x")
        clauses = sql.filter_clauses(Filter(**{field.name: value}))
        assert len(clauses) == 1, f"Filter.{field.name} produced {clauses}"
        # Which columns a filter reads decides whether scalar indexes serve it (the exact search plan).
        read = sql.filter_columns(Filter(**{field.name: value}))
        assert len(read) == 1, f"Filter.{field.name} reads {read}"
        (column,) = read
        assert column in columns, f"Filter.{field.name} reads {column}, not a column"
        assert column in clauses[0], f"{clauses[0]} does not read {column}"
    assert sql.filter_columns(Filter()) == set()
    assert sql.filter_columns(Filter(pinned=False, min_size=0)) == {"pinned", "size"}


def test_digests_filter(tmp_path: Path) -> None:
    from assetry.model import Filter
    from assetry.testing import make_asset

    catalog = LanceCatalog(CatalogSpec(str(tmp_path / "c"), 4, "cosine", LanceOptions()))
    a, b = make_asset(), make_asset()
    catalog.insert([a, b])
    found = catalog.find(Filter(digests=(a.digest or "",)), order="id", limit=10, offset=0)
    assert [x.id for x in found] == [a.id]
    assert catalog.find(Filter(digests=()), order="id", limit=10, offset=0) == []


def test_find_reads_the_page_again_when_a_record_goes_between_its_two_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`find` sorts ids first and reads their records second; another writer's delete in between must
    not leave the page a record short (a caller paging by offset would stop early)."""
    catalog = _open(tmp_path / "c", compact_every=0)
    assets = [make_asset() for _ in range(6)]
    catalog.insert(assets)
    real_records = catalog._records
    deleted: list[str] = []

    def delete_first_then_read(ids: Any, clause: str | None) -> dict[str, Asset]:
        if not deleted:
            deleted.append(ids[0])
            catalog.delete([ids[0]])  # a real delete, as another writer's would land
        return real_records(ids, clause)

    monkeypatch.setattr(catalog, "_records", delete_first_then_read)
    page = catalog.find(Filter(), order="id", limit=3, offset=0)
    assert deleted == [assets[0].id]
    assert [a.id for a in page] == [a.id for a in assets[1:4]]


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a clean `sys.modules`); its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_registering_the_plugin_imports_neither_lancedb_nor_its_rest_client() -> None:
    out = _python(
        """
        import sys
        from assetry.plugins import get_plugin_manager
        get_plugin_manager()
        print(sorted(m for m in ("lancedb", "lance_namespace") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_the_rest_client_lancedb_imports_but_a_catalog_never_calls_is_loaded_on_first_use(
    tmp_path: Path,
) -> None:
    """`assetry_lancedb._deferred`: `import lancedb` no longer runs the REST client's API modules (~0.9 s),
    a catalog works without them, and code that does use the client still gets all of it."""
    out = _python(
        f"""
        import sys
        import assetry_lancedb
        from assetry.backends import CatalogSpec
        from assetry_lancedb.catalog import LanceCatalog
        from assetry._testing.catalog import make_asset

        spec = CatalogSpec({str(tmp_path / "c")!r}, 4, "cosine", assetry_lancedb.LanceOptions())
        catalog = LanceCatalog(spec)
        asset = make_asset(embedding=(1.0, 0.0, 0.0, 0.0))
        catalog.insert([asset])
        from assetry.model import SearchQuery
        assert catalog.search(SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), limit=1))[0].asset.id == asset.id
        assert catalog.search(SearchQuery(text=asset.label, limit=1))[0].asset.id == asset.id
        catalog.close()
        print("api loaded:", "lance_namespace_urllib3_client.api" in sys.modules)
        import lance_namespace_urllib3_client as client
        print("client:", client.ApiClient.__name__, client.TableApi.__name__, client.__version__ != "")
        print("api loaded:", "lance_namespace_urllib3_client.api" in sys.modules)
        """
    )
    assert out.splitlines() == ["api loaded: False", "client: ApiClient TableApi True", "api loaded: True"]


def test_deferring_the_rest_client_leaves_an_imported_one_alone() -> None:
    out = _python(
        """
        import sys
        import lance_namespace_urllib3_client as client
        from assetry_lancedb._deferred import defer_rest_client
        defer_rest_client()
        print(sys.modules["lance_namespace_urllib3_client"] is client, hasattr(client, "TableApi"))
        """
    )
    assert out.strip() == "True True"


def test_lance_catalog_pages_by_keys() -> None:
    """The contract's shift test skips catalogs that page by offset; this one must not be skipped."""
    assert LanceCatalog.find_after is not Catalog.find_after
