"""Hypothesis stateful test over add / read / delete / pin / gc against a simple in-memory model, checking
the invariants of DESIGN.md after every step on a real store (local files + LanceDB):

I1 content: every asset reads back exactly the bytes ingested, and they hash to its digest.
I2 no dangling rows: every live row's blob exists.
I3 reference safety: a blob is deleted only when no live asset references it (and then it is deleted).
I4 quota: after gc, stored bytes <= quota unless all that is left is protected; the victims are the least
   recently used unprotected assets.
I7 validation: an invalid draft changes nothing; nor does a batch ingest one of whose puts fails, on any of
   its put threads.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, multiple, rule

import assetry
from assetry.digests import digest_bytes
from assetry.errors import SourceError, ValidationError
from assetry.model import Filter
from assetry_fsspec import storage

CONTENTS = [b"alpha" * 10, b"beta" * 50, b"gamma" * 200, b"delta", b"epsilon" * 30]
LABELS = ["a.png", "b.png", "c.txt"]
BAD_FIELDS: list[dict[str, Any]] = [
    {"label": "../up"},
    {"seed": "x"},
    {"kind": "hologram"},
    {"extra": {"s": {1}}},
    {"tags": [""]},
    {"embedding": [1.0]},
]


@contextlib.contextmanager
def _put_threads(count: int) -> Iterator[None]:
    """Local puts on ``count`` threads (the caller's included), whatever this machine's cores."""
    saved = storage.LOCAL_PUT_WORKERS
    storage.LOCAL_PUT_WORKERS = count
    try:
        yield
    finally:
        storage.LOCAL_PUT_WORKERS = saved


@attrs.define
class ModelAsset:
    content: bytes
    label: str
    touched: int
    pinned: bool = False


class StoreMachine(RuleBasedStateMachine):
    assets = Bundle("assets")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="assetry-inv-"))
        self.store = assetry.open(root=self.dir, vectors={"dimension": 4})
        self.model: dict[str, ModelAsset] = {}
        self.clock = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def stored_bytes(self) -> int:
        return sum(len(c) for c in {m.content for m in self.model.values()})

    @rule(target=assets, content=st.sampled_from(CONTENTS), label=st.sampled_from(LABELS))
    def add(self, content: bytes, label: str) -> str:
        asset = self.store.add(content, label=label)
        existing = [i for i, m in self.model.items() if m.content == content and m.label == label]
        if existing:  # same content + label: detected, not added again (I8)
            assert asset.id == existing[0]
        else:
            assert asset.id not in self.model
            self.model[asset.id] = ModelAsset(content, label, self.tick())
        assert asset.digest == digest_bytes(content)
        return asset.id

    @rule(content=st.sampled_from(CONTENTS), bad=st.sampled_from(BAD_FIELDS))
    def add_invalid(self, content: bytes, bad: dict[str, Any]) -> None:
        before = (self.store.catalog.storage_usage(), sorted(self.store.blobs.iter_blobs()))
        with pytest.raises(ValidationError):
            self.store.add(content + b"-new", **{"label": "fine.txt", **bad})
        assert (self.store.catalog.storage_usage(), sorted(self.store.blobs.iter_blobs())) == before  # I7

    @rule(
        target=assets,
        items=st.lists(st.tuples(st.sampled_from(CONTENTS), st.sampled_from(LABELS)), min_size=1, max_size=6),
        workers=st.integers(1, 4),
    )
    def add_many(self, items: list[tuple[bytes, str]], workers: int) -> Any:
        with _put_threads(workers):
            report = self.store.add_many([(content, {"label": label}) for content, label in items])
        for (content, label), asset in zip(items, report.assets, strict=True):
            existing = [i for i, m in self.model.items() if m.content == content and m.label == label]
            if existing:  # already there, or earlier in this batch (I8)
                assert asset.id == existing[0]
            else:
                self.model[asset.id] = ModelAsset(content, label, self.tick())
        return multiple(*{asset.id for asset in report.assets})

    @rule(
        contents=st.lists(st.sampled_from(CONTENTS), min_size=1, max_size=6),
        workers=st.integers(1, 4),
        data=st.data(),
    )
    def add_many_with_a_failing_put(self, contents: list[bytes], workers: int, data: st.DataObject) -> None:
        # Half the items new content (their blobs get written before the failure, on any thread), half
        # content already stored; one put fails, somewhere in the batch: nothing of the batch stays (I7).
        items = [content + b"-batch" if i % 2 else content for i, content in enumerate(contents)]
        failing = items[data.draw(st.integers(0, len(items) - 1), label="failing item")]
        real_put = self.store.blobs.put

        def put(content: Any) -> Any:
            with content.open() as reader:
                if reader.read() == failing:
                    raise PermissionError(13, "Permission denied")
            return real_put(content)

        self.store.blobs.put = put  # type: ignore[method-assign]
        try:
            with _put_threads(workers), pytest.raises(SourceError, match="cannot read"):
                self.store.add_many([(item, {"label": "batch.bin"}) for item in items])
        finally:
            del self.store.blobs.put

    @rule(asset_id=assets)
    def read(self, asset_id: str) -> None:
        if asset_id not in self.model:
            return
        assert self.store.read(asset_id) == self.model[asset_id].content  # I1
        self.model[asset_id].touched = self.tick()

    @rule(asset_id=assets)
    def pin(self, asset_id: str) -> None:
        if asset_id in self.model:
            self.store.pin(asset_id)
            self.model[asset_id].pinned = True

    @rule(asset_id=consumes(assets))
    def delete(self, asset_id: str) -> None:
        if asset_id not in self.model:
            return
        self.store.delete(asset_id)
        del self.model[asset_id]

    @rule(fraction=st.sampled_from([0.0, 0.3, 0.6, 1.0]), dry_run=st.booleans())
    def gc(self, fraction: float, dry_run: bool) -> None:
        quota = int(self.stored_bytes() * fraction)
        expected = self.expected_victims(quota)
        report = self.store.gc(quota, dry_run=dry_run)
        assert [e.asset_id for e in report.evicted] == expected  # I4: LRU order, protected spared
        if dry_run:
            return
        for asset_id in expected:
            del self.model[asset_id]
        protected_only = all(m.pinned for m in self.model.values())
        assert report.after <= quota or protected_only  # I4
        assert report.after == self.stored_bytes()

    def expected_victims(self, quota: int) -> list[str]:
        refs: dict[bytes, int] = {}
        for m in self.model.values():
            refs[m.content] = refs.get(m.content, 0) + 1
        remaining = self.stored_bytes()
        victims = []
        for asset_id, m in sorted(self.model.items(), key=lambda item: item[1].touched):
            if remaining <= quota:
                break
            if m.pinned:
                continue
            refs[m.content] -= 1
            if refs[m.content] == 0:
                remaining -= len(m.content)
            victims.append(asset_id)
        return victims

    @invariant()
    def catalog_matches_model_and_blobs_match_rows(self) -> None:
        rows = self.store.catalog.find(Filter(), order="id", limit=10_000, offset=0)
        assert {a.id for a in rows} == set(self.model)
        live_digests = {a.digest for a in rows}
        stored = {digest for digest, _ in self.store.blobs.iter_blobs()}
        assert live_digests <= stored  # I2: no row without its blob
        assert stored == live_digests  # I3: unreferenced blobs are gone, referenced ones kept
        for a in rows:
            with self.store.blobs.open(a.digest or "") as f:  # reading without recording a use
                data = f.read()
            assert data == self.model[a.id].content  # I1
            assert digest_bytes(data) == a.digest


# Each step touches a real LanceDB table, so examples are fewer than for pure functions; the "thorough"
# profile (HYPOTHESIS_PROFILE=thorough, the slow nox session) runs more.
StoreMachine.TestCase.settings = settings(
    max_examples=max(10, settings.default.max_examples // 4), stateful_step_count=25
)
TestStoreInvariants = StoreMachine.TestCase
