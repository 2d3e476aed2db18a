"""`CatalogContract`: the tests every `Catalog` must pass, and `make_asset` to build records for them.

Subclass the contract and provide one fixture, ``make_catalog``: a factory returning a catalog. Calls with
the same ``name`` within one test open the same stored catalog again (a second instance, as another
process would); a new name gives a fresh, empty catalog. Clean up in the fixture's teardown::

    class TestMyCatalog(CatalogContract):
        @pytest.fixture
        def make_catalog(self, tmp_path):
            opened = []
            def make(dimension=4, *, metric="cosine", name="main"):
                catalog = MyCatalog(tmp_path / name, dimension=dimension, metric=metric)
                opened.append(catalog)
                return catalog
            yield make
            for catalog in opened:
                catalog.close()

Semantics these tests fix where `assetry.model` leaves room: ``Filter.created_after`` is inclusive and
``created_before`` exclusive (consecutive windows partition time); embeddings must round-trip exactly for
values float32 can hold (backends may store float32); hits come best first (`Hit.score` never increases).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import attrs
import pytest

from assetry import backends
from assetry.backends import Catalog
from assetry.errors import ValidationError
from assetry.model import (
    LINK_FIELDS,
    ORDERS,
    PROVENANCE_FIELDS,
    Asset,
    Cursor,
    Filter,
    Kind,
    Links,
    Provenance,
    SearchQuery,
    Status,
    UsageEvent,
)


class MakeCatalog(Protocol):
    """``make_catalog(dimension=4, *, metric="cosine", name="main")``: see the module docstring."""

    def __call__(self, dimension: int = 4, *, metric: str = "cosine", name: str = "main") -> Catalog: ...


_counter = itertools.count(1)

BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def fake_digest(seed: object) -> str:
    """A well-formed digest (``blake3:`` + 64 hex digits) derived from ``seed``."""
    return "blake3:" + hashlib.sha256(repr(seed).encode()).hexdigest()


def make_asset(**overrides: Any) -> Asset:
    """A valid `Asset` with a unique id and a fake digest; keyword arguments replace any field.

    Provenance and link fields may be given flat (``prompt=``, ``agent_id=``), as `Store.add` takes them.
    """
    n = next(_counter)
    provenance = {k: overrides.pop(k) for k in list(overrides) if k in PROVENANCE_FIELDS}
    links = {k: overrides.pop(k) for k in list(overrides) if k in LINK_FIELDS}
    asset_id = overrides.pop("id", f"t{n:06d}-{hashlib.sha256(str(n).encode()).hexdigest()[:8]}")
    fields: dict[str, Any] = {
        "id": asset_id,
        "label": f"asset-{n}.png",
        "kind": Kind.IMAGE,
        "media_type": "image/png",
        "size": 100 + n,
        "digest": fake_digest(asset_id),
        "created_at": BASE_TIME + timedelta(seconds=n),
    }
    if provenance:
        fields["provenance"] = attrs.evolve(overrides.pop("provenance", Provenance()), **provenance)
    if links:
        fields["links"] = attrs.evolve(overrides.pop("links", Links()), **links)
    fields.update(overrides)
    return Asset(**fields)


def _ids(assets: Any) -> list[str]:
    return [a.id for a in assets]


def _all(catalog: Catalog, where: Filter | None = None) -> list[Asset]:
    return catalog.find(where or Filter(), order="id", limit=100_000, offset=0)


def _strip_usage(asset: Asset) -> Asset:
    return attrs.evolve(asset, last_used=None, access_count=0)


# Records for the filter tests. Every filterable field has a value that singles out a known subset.
_T0 = BASE_TIME
_FILTER_ASSETS: tuple[dict[str, Any], ...] = (
    {
        "id": "f-1",
        "label": "one.png",
        "kind": Kind.IMAGE,
        "media_type": "image/png",
        "size": 100,
        "digest": fake_digest("shared"),
        "tags": ("red", "cat"),
        "project": "p1",
        "created_by": "alice",
        "agent_id": "agent-1",
        "conversation_id": "conv-1",
        "message_id": "msg-1",
        "tool_call_id": "call-1",
        "task_id": "task-1",
        "model": "model-x",
        "seed": 1,
        "pinned": True,
        "created_at": _T0,
    },
    {
        "id": "f-2",
        "label": "two.jpg",
        "kind": Kind.IMAGE,
        "media_type": "image/jpeg",
        "size": 200,
        "tags": ("red",),
        "project": "p2",
        "status": Status.PENDING,
        "created_by": "bob",
        "agent_id": "agent-2",
        "conversation_id": "conv-2",
        "message_id": "msg-2",
        "tool_call_id": "call-2",
        "task_id": "task-2",
        "parent_ids": ("f-1",),
        "model": "model-y",
        "seed": 2,
        "created_at": _T0 + timedelta(hours=1),
    },
    {
        "id": "f-3",
        "label": "three.txt",
        "kind": Kind.TEXT,
        "media_type": "text/plain",
        "size": 300,
        "tags": ("cat", "dog"),
        "project": "p1",
        "status": Status.FAILED,
        "created_by": "bob",
        "parent_ids": ("f-1", "f-2"),
        "model": "model-x",
        "seed": 3,
        "created_at": _T0 + timedelta(hours=2),
    },
    {
        "id": "f-4",
        "label": "four.wav",
        "kind": Kind.AUDIO,
        "media_type": "audio/wav",
        "size": 400,
        "digest": fake_digest("shared"),
        "created_at": _T0 + timedelta(hours=3),
    },
)

_FILTER_CASES: list[tuple[str, Filter, set[str]]] = [
    ("nothing", Filter(), {"f-1", "f-2", "f-3", "f-4"}),
    ("ids", Filter(ids=("f-1", "f-3", "missing")), {"f-1", "f-3"}),
    ("ids-empty", Filter(ids=()), set()),
    ("kind", Filter(kind=(Kind.IMAGE,)), {"f-1", "f-2"}),
    ("kinds", Filter(kind=(Kind.TEXT, Kind.AUDIO)), {"f-3", "f-4"}),
    ("media-major", Filter(media_type="image/"), {"f-1", "f-2"}),
    ("media-full", Filter(media_type="image/png"), {"f-1"}),
    ("media-no-wildcards", Filter(media_type="image_"), set()),
    ("tags-all", Filter(tags=("red", "cat")), {"f-1"}),
    ("tags-one", Filter(tags=("red",)), {"f-1", "f-2"}),
    ("any-tags", Filter(any_tags=("dog", "red")), {"f-1", "f-2", "f-3"}),
    ("project", Filter(project="p1"), {"f-1", "f-3"}),
    ("status", Filter(status=Status.PENDING), {"f-2"}),
    ("created-by", Filter(created_by="bob"), {"f-2", "f-3"}),
    ("agent", Filter(agent_id="agent-1"), {"f-1"}),
    ("conversation", Filter(conversation_id="conv-2"), {"f-2"}),
    ("message", Filter(message_id="msg-1"), {"f-1"}),
    ("tool-call", Filter(tool_call_id="call-2"), {"f-2"}),
    ("task", Filter(task_id="task-1"), {"f-1"}),
    ("parent", Filter(parent_id="f-1"), {"f-2", "f-3"}),
    ("model", Filter(model="model-x"), {"f-1", "f-3"}),
    ("seed", Filter(seed=2), {"f-2"}),
    ("digest", Filter(digest=fake_digest("shared")), {"f-1", "f-4"}),
    ("label", Filter(label="three.txt"), {"f-3"}),
    ("pinned", Filter(pinned=True), {"f-1"}),
    ("not-pinned", Filter(pinned=False), {"f-2", "f-3", "f-4"}),
    ("created-after-inclusive", Filter(created_after=_T0 + timedelta(hours=1)), {"f-2", "f-3", "f-4"}),
    ("created-before-exclusive", Filter(created_before=_T0 + timedelta(hours=1)), {"f-1"}),
    (
        "created-window-other-zone",
        Filter(
            created_after=(_T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=5))),
            created_before=(_T0 + timedelta(hours=3)).astimezone(timezone(timedelta(hours=-7))),
        ),
        {"f-2", "f-3"},
    ),
    (
        "created-after-microsecond",
        Filter(created_after=_T0 + timedelta(microseconds=1)),
        {"f-2", "f-3", "f-4"},
    ),
    ("min-size", Filter(min_size=200), {"f-2", "f-3", "f-4"}),
    ("max-size", Filter(max_size=200), {"f-1", "f-2"}),
    ("size-range", Filter(min_size=150, max_size=350), {"f-2", "f-3"}),
    ("combined", Filter(kind=(Kind.IMAGE,), project="p2"), {"f-2"}),
    ("no-match", Filter(project="p1", tags=("red",), status=Status.FAILED), set()),
]


def _insert_with_ties(catalog: Catalog) -> None:
    """23 records that tie on every order's column (sizes, labels, times), of two tenants."""
    catalog.insert(
        [
            make_asset(
                size=i % 3,
                label=f"{i % 4}.png",
                created_at=BASE_TIME + timedelta(seconds=i % 2),
                tenant="A" if i % 5 else "B",
            )
            for i in range(23)
        ]
    )


class CatalogContract:
    """Behaviour every catalog backend must have. See the module docstring for how to use it."""

    @pytest.fixture
    def make_catalog(self) -> MakeCatalog:
        pytest.fail(
            f"{type(self).__name__} must provide a `make_catalog` fixture: a factory "
            "make_catalog(dimension=4, *, metric='cosine', name='main') returning a Catalog"
        )

    @pytest.fixture
    def catalog(self, make_catalog: MakeCatalog) -> Catalog:
        return make_catalog()

    # -- insert and get --------------------------------------------------------------------------------

    def test_insert_get_round_trips_every_field(self, catalog: Catalog) -> None:
        zone = timezone(timedelta(hours=2))
        asset = make_asset(
            id="full-1",
            label="A full record.webp",
            kind=Kind.IMAGE,
            media_type="image/webp",
            size=123_456,
            digest=fake_digest("full"),
            status=Status.AVAILABLE,
            created_at=datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=zone),
            created_by="creator",
            tenant="tenant-a",
            project="project-a",
            tags=("one", "two words", "ünïcødé"),
            provenance=Provenance(
                model="sdxl-1.0",
                prompt="a cat, \"quoted\" and 'single'",
                negative_prompt="blurry",
                seed=2**63 - 1,
                parameters={"steps": 30, "cfg": 7.5, "sampler": "euler", "loras": ["a", "b"], "x": None},
            ),
            links=Links(
                agent_id="agent",
                conversation_id="conversation",
                message_id="message",
                tool_call_id="tool-call",
                task_id="task",
                parent_ids=("p-1", "p-2"),
                reference_ids=("r-1",),
            ),
            width=1024,
            height=768,
            duration=1.25,
            extra={"nested": {"list": [1, 2.5, "three", True, None]}, "empty": {}, "n": -3},
            embedding=(0.5, -0.25, 1.0, 0.125),
            pinned=True,
        )
        bare = make_asset(id="bare-1", digest=None, status=Status.PENDING, size=0)
        catalog.insert([asset, bare])

        got = catalog.get_many(["full-1", "bare-1", "missing"])
        assert set(got) == {"full-1", "bare-1"}
        assert got["full-1"] == asset
        assert got["bare-1"] == bare
        created = got["full-1"].created_at
        assert created.utcoffset() == timedelta(0)
        assert created == datetime(2024, 2, 29, 21, 59, 58, 123456, tzinfo=UTC)
        assert got["full-1"].last_used is None
        assert got["full-1"].access_count == 0

    def test_get_many_ignores_missing_ids_and_scopes_by_tenant(self, catalog: Catalog) -> None:
        a = make_asset(tenant="a")
        b = make_asset(tenant="b")
        catalog.insert([a, b])
        assert catalog.get_many([]) == {}
        assert set(catalog.get_many([a.id, b.id, "nope"])) == {a.id, b.id}
        assert set(catalog.get_many([a.id, b.id], tenant="a")) == {a.id}
        assert catalog.get_many([b.id], tenant="a") == {}

    def test_insert_of_an_existing_id_fails_and_writes_nothing(self, catalog: Catalog) -> None:
        first = make_asset()
        catalog.insert([first])
        fresh = make_asset()
        again = make_asset(id=first.id, label="other.png")
        with pytest.raises(ValidationError) as info:
            catalog.insert([fresh, again])
        assert info.value.field == "id"
        assert first.id in str(info.value)
        assert catalog.get_many([fresh.id]) == {}
        assert catalog.get_many([first.id])[first.id] == first
        assert catalog.count(Filter()) == 1

    def test_insert_with_an_id_twice_in_the_batch_fails_and_writes_nothing(self, catalog: Catalog) -> None:
        a = make_asset()
        twin = make_asset(id=a.id, label="twin.png")
        with pytest.raises(ValidationError) as info:
            catalog.insert([a, make_asset(), twin])
        assert info.value.field == "id"
        assert catalog.count(Filter()) == 0

    def test_insert_rejects_an_embedding_of_the_wrong_length(self, make_catalog: MakeCatalog) -> None:
        catalog = make_catalog(dimension=4)
        good = make_asset(embedding=(1.0, 0.0, 0.0, 0.0))
        bad = make_asset(embedding=(1.0, 0.0, 0.0))
        with pytest.raises(ValidationError) as info:
            catalog.insert([good, bad])
        assert info.value.field == "embedding"
        assert catalog.count(Filter()) == 0
        with pytest.raises(ValidationError) as info:
            catalog.upsert([make_asset(embedding=(1.0,) * 5)])
        assert info.value.field == "embedding"
        assert catalog.count(Filter()) == 0

    def test_empty_batches_are_no_ops(self, catalog: Catalog) -> None:
        catalog.insert([])
        catalog.upsert([])
        catalog.update([])
        catalog.delete([])
        catalog.record_usage([])
        assert catalog.count(Filter()) == 0
        assert catalog.storage_usage().assets == 0

    # -- find and count --------------------------------------------------------------------------------

    @pytest.mark.parametrize(("case", "where", "expected"), _FILTER_CASES, ids=[c[0] for c in _FILTER_CASES])
    def test_every_filter_field_filters(
        self, catalog: Catalog, case: str, where: Filter, expected: set[str]
    ) -> None:
        catalog.insert([make_asset(**fields) for fields in _FILTER_ASSETS])
        found = _ids(_all(catalog, where))
        assert set(found) == expected, case
        assert len(found) == len(set(found))
        assert catalog.count(where) == len(expected)

    def test_filter_values_with_quotes_are_literals(self, catalog: Catalog) -> None:
        quoted = make_asset(
            label="O'Brien's cat.png",
            tags=("it's", 'say "hi"'),
            project="O'Brien",
            created_by="x' OR '1'='1",
            prompt="portrait of O'Brien",
        )
        other = make_asset(project="plain", tags=("plain",))
        catalog.insert([quoted, other])
        assert _ids(_all(catalog, Filter(label="O'Brien's cat.png"))) == [quoted.id]
        assert _ids(_all(catalog, Filter(project="O'Brien"))) == [quoted.id]
        assert _ids(_all(catalog, Filter(created_by="x' OR '1'='1"))) == [quoted.id]
        assert _ids(_all(catalog, Filter(tags=("it's",)))) == [quoted.id]
        assert _ids(_all(catalog, Filter(any_tags=('say "hi"',)))) == [quoted.id]
        # Injection attempts match nothing instead of everything.
        assert _all(catalog, Filter(project="x' OR '1'='1")) == []
        assert _all(catalog, Filter(project="plain') OR ('1'='1")) == []
        assert _all(catalog, Filter(label="\\'; DROP TABLE assets; --")) == []
        assert catalog.count(Filter(tenant="default' OR tenant != '")) == 0
        assert catalog.get_many(["x') OR ('1'='1"]) == {}
        assert catalog.ids_with_prefix("' OR '1'='1") == []
        assert catalog.digest_references(["x' OR '1'='1"]) == {"x' OR '1'='1": 0}
        hits = catalog.search(SearchQuery(text="O'Brien", filter=Filter(project="O'Brien")))
        assert _ids(h.asset for h in hits) == [quoted.id]
        assert catalog.count(Filter()) == 2

    @pytest.mark.parametrize("order", ORDERS)
    def test_pages_are_stable_without_duplicates_or_gaps(self, catalog: Catalog, order: str) -> None:
        assets = [
            make_asset(
                label=f"label-{i % 4}",
                size=[10, 20, 30][i % 3],
                created_at=BASE_TIME + timedelta(minutes=i % 5),
            )
            for i in range(23)
        ]
        catalog.insert(assets[:12])
        catalog.insert(assets[12:])
        column = order.lstrip("-")
        expected = sorted(assets, key=lambda a: a.id)
        expected.sort(key=lambda a: getattr(a, column), reverse=order.startswith("-"))

        pages: list[str] = []
        for offset in range(0, 30, 5):
            pages += _ids(catalog.find(Filter(), order=order, limit=5, offset=offset))
        assert pages == _ids(expected)
        assert _ids(catalog.find(Filter(), order=order, limit=100, offset=0)) == _ids(expected)
        assert catalog.find(Filter(), order=order, limit=5, offset=100) == []

    def test_find_with_a_filter_orders_and_pages(self, catalog: Catalog) -> None:
        images = [make_asset(kind=Kind.IMAGE, size=i) for i in range(7)]
        catalog.insert([*images, *(make_asset(kind=Kind.TEXT, media_type="text/plain") for _ in range(5))])
        where = Filter(kind=(Kind.IMAGE,))
        first = catalog.find(where, order="-size", limit=4, offset=0)
        second = catalog.find(where, order="-size", limit=4, offset=4)
        assert [a.size for a in first + second] == [6, 5, 4, 3, 2, 1, 0]

    @pytest.mark.parametrize("order", ORDERS)
    def test_ordered_ids_are_finds_order_whole(
        self, catalog: Catalog, order: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`ordered_ids` (what `Store.iter` walks) lists what `find` pages through, in the same order,
        ties included; the base class's paging default (here 4 records a page) must agree with it."""
        monkeypatch.setattr(backends, "ORDERED_IDS_PAGE", 4)
        _insert_with_ties(catalog)
        for where in (Filter(), Filter(tenant="A"), Filter(tenant="nobody")):
            expected = [a.id for a in catalog.find(where, order=order, limit=100, offset=0)]
            assert catalog.ordered_ids(where, order=order) == expected
            assert Catalog.ordered_ids(catalog, where, order=order) == expected

    @pytest.mark.parametrize("order", ORDERS)
    def test_find_after_continues_a_page_by_its_keys(self, catalog: Catalog, order: str) -> None:
        """`find_after` (what `Store.find(after=cursor)` calls) gives the pages `find` gives, ties of the
        order's column included, whatever the filter; and it continues after the cursor's keys, so a
        record inserted before the cursor, or the cursor's own record deleted, does not shift the next
        page. The base class's default (by offset) must give the same pages while nothing changes."""
        _insert_with_ties(catalog)
        for where in (Filter(), Filter(tenant="A")):
            expected = [a.id for a in catalog.find(where, order=order, limit=100, offset=0)]
            for find_after in (catalog.find_after, functools.partial(Catalog.find_after, catalog)):
                walked: list[str] = []
                page = catalog.find(where, order=order, limit=4, offset=0)
                while page:
                    walked += [a.id for a in page]
                    cursor = Cursor.after(page[-1], order, len(walked), where)
                    page = find_after(where, order=order, limit=4, after=cursor)
                assert walked == expected

    @pytest.mark.parametrize("order", ORDERS)
    def test_find_after_is_not_shifted_by_changes_before_the_cursor(
        self, catalog: Catalog, order: str
    ) -> None:
        """A catalog that overrides `find_after` continues after the cursor's keys: records inserted
        before the cursor, or the cursor's own record deleted, do not shift the next page (an offset
        would)."""
        if type(catalog).find_after is Catalog.find_after:
            pytest.skip("this catalog pages by offset (Catalog.find_after's default)")
        _insert_with_ties(catalog)
        where = Filter()
        first = catalog.find(where, order=order, limit=5, offset=0)
        expected_next = [a.id for a in catalog.find(where, order=order, limit=5, offset=5)]
        cursor = Cursor.after(first[-1], order, 5, where)
        # Two records that sort before the cursor in this order (the lowest id, size, label ("!" sorts
        # before digits) and time; or, descending, the highest), and the cursor's own record deleted.
        descending = order.startswith("-")
        catalog.insert(
            [
                make_asset(
                    id=(("f" if descending else "0") * 31) + str(n),
                    size=1000 if descending else 0,
                    label="zzz.png" if descending else "!.png",
                    created_at=BASE_TIME + timedelta(days=1 if descending else -1),
                )
                for n in range(2)
            ]
        )
        catalog.delete([first[-1].id])
        assert [a.id for a in catalog.find_after(where, order=order, limit=5, after=cursor)] == expected_next

    def test_unknown_order_is_a_validation_error(self, catalog: Catalog) -> None:
        with pytest.raises(ValidationError) as info:
            catalog.find(Filter(), order="size; DROP", limit=10, offset=0)
        assert info.value.field == "order"

    def test_ids_with_prefix(self, catalog: Catalog) -> None:
        catalog.insert(
            [
                make_asset(id=i, tenant=t)
                for i, t in [("abc1", "a"), ("abc2", "a"), ("abd", "a"), ("abc3", "b")]
            ]
        )
        assert catalog.ids_with_prefix("abc") == ["abc1", "abc2", "abc3"]
        assert catalog.ids_with_prefix("abc", tenant="a") == ["abc1", "abc2"]
        assert catalog.ids_with_prefix("abc", limit=1) == ["abc1"]
        assert catalog.ids_with_prefix("zzz") == []
        assert catalog.ids_with_prefix("ab_") == []

    # -- tenancy ---------------------------------------------------------------------------------------

    def test_tenant_filter_never_returns_another_tenants_rows(self, catalog: Catalog) -> None:
        shared = fake_digest("tenant-shared")
        a = [
            make_asset(
                tenant="A",
                prompt="harbor at dawn",
                tags=("t",),
                embedding=(1.0, 0.0, 0.0, 0.0),
                digest=shared,
                size=10,
            )
            for _ in range(3)
        ]
        b = [
            make_asset(
                tenant="B",
                prompt="harbor at dawn",
                tags=("t",),
                embedding=(1.0, 0.0, 0.0, 0.0),
                digest=fake_digest(i),
                size=1000,
                kind=Kind.TEXT,
                media_type="text/plain",
            )
            for i in range(4)
        ]
        catalog.insert(a + b)
        a_ids, b_ids = set(_ids(a)), set(_ids(b))
        only_a = Filter(tenant="A")
        assert set(_ids(_all(catalog, only_a))) == a_ids
        assert catalog.count(only_a) == 3
        assert set(_ids(_all(catalog, Filter(tenant="A", tags=("t",))))) == a_ids
        for query in (
            SearchQuery(text="harbor", filter=only_a, limit=50),
            SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), filter=only_a, limit=50),
            SearchQuery(text="harbor", vector=(1.0, 0.0, 0.0, 0.0), filter=only_a, limit=50),
        ):
            assert set(_ids(h.asset for h in catalog.search(query))) == a_ids
        assert set(catalog.get_many(a_ids | b_ids, tenant="A")) == a_ids
        assert {row.asset_id for row in catalog.iter_lru(tenant="A")} == a_ids
        usage = catalog.storage_usage(tenant="A")
        assert (usage.assets, usage.blobs, usage.stored_bytes, usage.logical_bytes) == (3, 1, 10, 30)
        assert catalog.counts_by_kind(tenant="A") == {"image": 3}
        assert catalog.counts_by_kind(tenant="B") == {"text": 4}
        assert catalog.storage_usage().assets == 7
        assert catalog.count(Filter(tenant="C")) == 0

    # -- search ----------------------------------------------------------------------------------------

    def test_full_text_finds_words_in_prompt_label_and_tags(self, catalog: Catalog) -> None:
        by_prompt = make_asset(label="a.png", prompt="a sunset over snowy mountains")
        by_label = make_asset(label="harbor-boats.png")
        by_tag = make_asset(label="b.png", tags=("watercolor", "study"))
        nothing = make_asset(label="c.png", prompt="a bowl of fruit")
        catalog.insert([by_prompt, by_label, by_tag, nothing])
        for word, expected in (("mountains", by_prompt), ("harbor", by_label), ("watercolor", by_tag)):
            hits = catalog.search(SearchQuery(text=word))
            assert _ids(h.asset for h in hits) == [expected.id], word
            assert hits[0].asset == expected
            assert hits[0].distance is None
        assert catalog.search(SearchQuery(text="zeppelin")) == []

    def test_full_text_finds_rows_added_later_and_applies_filters(self, catalog: Catalog) -> None:
        early = make_asset(prompt="lighthouse on a cliff", project="p")
        catalog.insert([early])
        assert _ids(h.asset for h in catalog.search(SearchQuery(text="lighthouse"))) == [early.id]
        late = make_asset(prompt="lighthouse at night", project="q")
        catalog.insert([late])
        assert set(_ids(h.asset for h in catalog.search(SearchQuery(text="lighthouse")))) == {
            early.id,
            late.id,
        }
        hits = catalog.search(SearchQuery(text="lighthouse", filter=Filter(project="q")))
        assert _ids(h.asset for h in hits) == [late.id]
        hits = catalog.search(SearchQuery(text="lighthouse", limit=1))
        assert len(hits) == 1

    def test_full_text_applies_filters_before_ranking(self, catalog: Catalog) -> None:
        """Better matches outside the filter must not crowd out the filter's own: with the filter applied
        after ranking, the top 2 here would all be filtered away."""
        catalog.insert(
            [make_asset(prompt="lighthouse lighthouse lighthouse", project="many") for _ in range(10)]
        )
        few = [
            make_asset(prompt="a lighthouse by the sea, with gulls and boats", project="few")
            for _ in range(3)
        ]
        catalog.insert(few)
        hits = catalog.search(SearchQuery(text="lighthouse", filter=Filter(project="few"), limit=2))
        assert len(hits) == 2
        assert {h.asset.project for h in hits} == {"few"}

    def test_vector_search_returns_nearest_first(self, catalog: Catalog) -> None:
        near = make_asset(embedding=(1.0, 0.0, 0.0, 0.0))
        close = make_asset(embedding=(0.75, 0.25, 0.0, 0.0))
        far = make_asset(embedding=(0.0, 1.0, 0.0, 0.0))
        opposite = make_asset(embedding=(-1.0, 0.0, 0.0, 0.0))
        without = make_asset(embedding=None)
        catalog.insert([far, without, opposite, near, close])
        hits = catalog.search(SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), limit=10))
        assert _ids(h.asset for h in hits) == [near.id, close.id, far.id, opposite.id]
        assert all(h.distance is not None for h in hits)
        distances = [h.distance for h in hits]
        assert distances == sorted(distances)  # type: ignore[type-var]
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert hits[0].asset == near
        top = catalog.search(SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), limit=2))
        assert _ids(h.asset for h in top) == [near.id, close.id]

    def test_vector_search_applies_filters_before_ranking(self, catalog: Catalog) -> None:
        assets = [make_asset(embedding=(1.0, i / 10, 0.0, 0.0), project="many") for i in range(10)]
        rare = make_asset(embedding=(0.0, 0.0, 1.0, 0.0), project="rare")
        catalog.insert([*assets, rare])
        hits = catalog.search(
            SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), filter=Filter(project="rare"), limit=3)
        )
        assert _ids(h.asset for h in hits) == [rare.id]

    def test_hybrid_search_returns_the_union_ranked(self, catalog: Catalog) -> None:
        text_only = make_asset(prompt="a lighthouse in fog", embedding=(0.0, 0.0, 0.0, 1.0))
        vector_only = make_asset(prompt="a bowl of fruit", embedding=(1.0, 0.0, 0.0, 0.0))
        both = make_asset(prompt="lighthouse", embedding=(0.9, 0.1, 0.0, 0.0))
        neither = make_asset(prompt="a bowl of soup", embedding=None)
        catalog.insert([text_only, vector_only, both, neither])
        hits = catalog.search(SearchQuery(text="lighthouse", vector=(1.0, 0.0, 0.0, 0.0), limit=10))
        found = _ids(h.asset for h in hits)
        assert found[0] == both.id
        assert set(found) == {text_only.id, vector_only.id, both.id}
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        by_id = {h.asset.id: h for h in hits}
        assert by_id[vector_only.id].distance is not None

    def test_search_excludes_ids(self, catalog: Catalog) -> None:
        a = make_asset(prompt="red kite", embedding=(1.0, 0.0, 0.0, 0.0))
        b = make_asset(prompt="red kite", embedding=(0.9, 0.1, 0.0, 0.0))
        catalog.insert([a, b])
        for query in (
            SearchQuery(text="kite", exclude_ids=(a.id,)),
            SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), exclude_ids=(a.id,)),
            SearchQuery(text="kite", vector=(1.0, 0.0, 0.0, 0.0), exclude_ids=(a.id,)),
        ):
            assert _ids(h.asset for h in catalog.search(query)) == [b.id]

    def test_search_rejects_bad_queries(self, catalog: Catalog) -> None:
        with pytest.raises(ValidationError):
            catalog.search(SearchQuery())
        with pytest.raises(ValidationError) as info:
            catalog.search(SearchQuery(vector=(1.0, 0.0)))
        assert info.value.field == "vector"

    def test_search_results_carry_usage(self, catalog: Catalog) -> None:
        a = make_asset(prompt="otter", embedding=(1.0, 0.0, 0.0, 0.0))
        catalog.insert([a])
        catalog.record_usage([UsageEvent(a.id, "read", BASE_TIME + timedelta(days=1))])
        (hit,) = catalog.search(SearchQuery(text="otter"))
        assert hit.asset.access_count == 1
        assert hit.asset.last_used == BASE_TIME + timedelta(days=1)

    # -- usage -----------------------------------------------------------------------------------------

    def test_record_usage_folds_counts_and_last_used(self, catalog: Catalog) -> None:
        a, b, never = make_asset(), make_asset(), make_asset()
        catalog.insert([a, b, never])
        t = BASE_TIME + timedelta(days=1)
        catalog.record_usage(
            [
                UsageEvent(a.id, "read", t + timedelta(seconds=5)),
                UsageEvent(a.id, "read", t),
                UsageEvent(b.id, "open", t + timedelta(seconds=1)),
                UsageEvent("not-a-record", "read", t),
            ]
        )
        got = catalog.get_many([a.id, b.id, never.id])
        assert (got[a.id].access_count, got[a.id].last_used) == (2, t + timedelta(seconds=5))
        assert (got[b.id].access_count, got[b.id].last_used) == (1, t + timedelta(seconds=1))
        assert (got[never.id].access_count, got[never.id].last_used) == (0, None)
        # A second batch adds to the counts; an older timestamp does not move last_used back.
        catalog.record_usage(
            [
                UsageEvent(a.id, "read", t - timedelta(days=1)),
                UsageEvent(b.id, "read", t + timedelta(hours=1)),
            ]
        )
        got = catalog.get_many([a.id, b.id])
        assert (got[a.id].access_count, got[a.id].last_used) == (3, t + timedelta(seconds=5))
        assert (got[b.id].access_count, got[b.id].last_used) == (2, t + timedelta(hours=1))
        last_used = got[a.id].last_used
        assert last_used is not None
        assert last_used.utcoffset() == timedelta(0)
        assert catalog.get_many(["not-a-record"]) == {}
        # Usage never changes the record itself.
        assert _strip_usage(got[a.id]) == a

    def test_update_replaces_metadata_and_keeps_usage(self, catalog: Catalog) -> None:
        a = make_asset(tags=("old",), prompt="moonlit marsh")
        catalog.insert([a])
        catalog.record_usage([UsageEvent(a.id, "read", BASE_TIME + timedelta(days=2))] * 3)
        changed = attrs.evolve(
            a,
            tags=("new",),
            label="renamed.png",
            pinned=True,
            provenance=Provenance(prompt="golden desert"),
            embedding=(0.0, 1.0, 0.0, 0.0),
        )
        catalog.update([changed])
        got = catalog.get_many([a.id])[a.id]
        assert _strip_usage(got) == changed
        assert (got.access_count, got.last_used) == (3, BASE_TIME + timedelta(days=2))
        assert _ids(_all(catalog, Filter(tags=("new",)))) == [a.id]
        assert _all(catalog, Filter(tags=("old",))) == []
        assert _ids(h.asset for h in catalog.search(SearchQuery(text="desert"))) == [a.id]
        assert catalog.search(SearchQuery(text="marsh")) == []
        assert catalog.count(Filter()) == 1

    def test_upsert_is_idempotent(self, catalog: Catalog) -> None:
        first = [make_asset(prompt=f"seed {i}") for i in range(3)]
        catalog.upsert(first)
        catalog.upsert(first)
        stored = _all(catalog)
        assert stored == sorted(first, key=lambda a: a.id)
        catalog.record_usage([UsageEvent(first[0].id, "read", BASE_TIME)])
        changed = attrs.evolve(first[1], label="changed.png")
        new = make_asset()
        catalog.upsert([first[0], changed, new])
        got = catalog.get_many([a.id for a in [*first, new]])
        assert len(got) == 4
        assert got[changed.id] == changed
        assert got[new.id] == new
        assert got[first[0].id].access_count == 1
        assert catalog.count(Filter()) == 4

    def test_delete_removes_rows_and_usage(self, catalog: Catalog) -> None:
        a, b, c = make_asset(prompt="zebra"), make_asset(), make_asset()
        catalog.insert([a, b, c])
        catalog.record_usage([UsageEvent(a.id, "read", BASE_TIME), UsageEvent(b.id, "read", BASE_TIME)])
        catalog.delete([a.id, b.id, "unknown"])
        assert set(catalog.get_many([a.id, b.id, c.id])) == {c.id}
        assert catalog.count(Filter()) == 1
        assert catalog.search(SearchQuery(text="zebra")) == []
        assert {r.asset_id for r in catalog.iter_lru()} == {c.id}
        # Re-adding a deleted id starts from fresh counters: the old ones went with the row.
        catalog.insert([a])
        assert catalog.get_many([a.id])[a.id].access_count == 0
        catalog.delete([])
        catalog.delete(["unknown"])
        assert catalog.count(Filter()) == 2

    # -- references, LRU, accounting -------------------------------------------------------------------

    def test_digest_references_counts_records(self, catalog: Catalog) -> None:
        d1, d2, d3 = fake_digest(1), fake_digest(2), fake_digest(3)
        catalog.insert([make_asset(digest=d1), make_asset(digest=d1, tenant="other"), make_asset(digest=d2)])
        assert catalog.digest_references([d1, d2, d3]) == {d1: 2, d2: 1, d3: 0}
        assert catalog.digest_references([]) == {}
        assert sorted(catalog.iter_digests()) == sorted([d1, d2])

    def test_iter_lru_orders_by_last_use_then_creation(self, catalog: Catalog) -> None:
        t = [BASE_TIME + timedelta(hours=h) for h in range(8)]
        never_1 = make_asset(id="never-1", created_at=t[1])
        never_3 = make_asset(id="never-3", created_at=t[3])
        never_3b = make_asset(id="never-3b", created_at=t[3])
        used_2 = make_asset(id="used-2", created_at=t[0])
        used_5 = make_asset(id="used-5", created_at=t[0])
        pinned = make_asset(id="pinned", created_at=t[0], pinned=True)
        pending = make_asset(id="pending", created_at=t[0], status=Status.PENDING, digest=None)
        failed = make_asset(id="failed", created_at=t[0], status=Status.FAILED)
        catalog.insert([used_5, never_3b, pinned, never_1, pending, used_2, never_3, failed])
        catalog.record_usage(
            [
                UsageEvent("used-2", "read", t[2]),
                UsageEvent("used-5", "read", t[5]),
                UsageEvent("pinned", "read", t[0]),
            ]
        )
        rows = list(catalog.iter_lru())
        assert [r.asset_id for r in rows] == ["never-1", "used-2", "never-3", "never-3b", "used-5"]
        assert [r.last_used for r in rows] == [t[1], t[2], t[3], t[3], t[5]]
        assert rows[0].digest == never_1.digest
        assert rows[0].size == never_1.size
        assert rows[0].label == never_1.label
        assert all(r.references == 1 for r in rows)

    def test_iter_lru_counts_references_across_tenants_and_protection(self, catalog: Catalog) -> None:
        shared = fake_digest("shared")
        catalog.insert(
            [
                make_asset(id="evictable", digest=shared, tenant="A"),
                make_asset(id="pinned-twin", digest=shared, tenant="A", pinned=True),
                make_asset(id="other-tenant-twin", digest=shared, tenant="B"),
                make_asset(id="alone", digest=fake_digest("alone"), tenant="A"),
            ]
        )
        rows = {r.asset_id: r for r in catalog.iter_lru(tenant="A")}
        assert set(rows) == {"evictable", "alone"}
        assert rows["evictable"].references == 3
        assert rows["alone"].references == 1

    def test_lru_scan_is_storage_usage_and_iter_lru(self, catalog: Catalog) -> None:
        shared = fake_digest("scan-shared")
        catalog.insert(
            [
                make_asset(digest=shared, size=10, tenant="A"),
                make_asset(digest=shared, size=10, tenant="B", pinned=True),
                make_asset(size=7, tenant="A", created_at=BASE_TIME - timedelta(days=1)),
                make_asset(digest=None, size=0, status=Status.PENDING, tenant="A"),
            ]
        )
        for tenant in (None, "A", "B"):
            usage, rows = catalog.lru_scan(tenant=tenant)
            assert usage == catalog.storage_usage(tenant=tenant)
            assert list(rows) == list(catalog.iter_lru(tenant=tenant))

    def test_storage_usage_counts_each_digest_once(self, catalog: Catalog) -> None:
        d1, d2 = fake_digest("s1"), fake_digest("s2")
        catalog.insert(
            [
                make_asset(digest=d1, size=100),
                make_asset(digest=d1, size=100, kind=Kind.TEXT, media_type="text/plain"),
                make_asset(digest=d2, size=50),
                make_asset(digest=None, size=0, status=Status.PENDING),
            ]
        )
        usage = catalog.storage_usage()
        assert (usage.assets, usage.blobs, usage.stored_bytes, usage.logical_bytes) == (4, 2, 150, 250)
        assert catalog.counts_by_kind() == {"image": 3, "text": 1}

    # -- durability ------------------------------------------------------------------------------------

    def test_compact_keeps_data(self, catalog: Catalog) -> None:
        assets = [make_asset(prompt=f"compact {i}", embedding=(1.0, float(i), 0.0, 0.0)) for i in range(30)]
        for i in range(0, 30, 5):
            catalog.insert(assets[i : i + 5])
        catalog.update([attrs.evolve(assets[0], label="updated.png")])
        catalog.delete([assets[1].id])
        catalog.record_usage([UsageEvent(assets[2].id, "read", BASE_TIME)])
        before = _all(catalog)
        catalog.compact()
        catalog.compact()
        assert _all(catalog) == before
        assert len(before) == 29
        assert len(catalog.search(SearchQuery(text="compact", limit=50))) == 29
        assert catalog.search(SearchQuery(vector=(1.0, 0.0, 0.0, 0.0), limit=1))[0].asset.id == assets[0].id

    def test_reopening_sees_the_data(self, make_catalog: MakeCatalog) -> None:
        first = make_catalog(name="durable")
        a = make_asset(prompt="persisted", embedding=(0.0, 0.0, 1.0, 0.0))
        first.insert([a])
        first.record_usage([UsageEvent(a.id, "read", BASE_TIME)])
        first.close()
        second = make_catalog(name="durable")
        got = second.get_many([a.id])[a.id]
        assert _strip_usage(got) == a
        assert got.access_count == 1
        assert _ids(h.asset for h in second.search(SearchQuery(text="persisted"))) == [a.id]
        assert make_catalog(name="elsewhere").count(Filter()) == 0
