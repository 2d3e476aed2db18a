"""Functions the S3 tests run in separate processes (multiprocessing "spawn": a fresh interpreter, as a
second worker machine would have). Each reports through a queue: ``("ok", result)`` or ``("error", tb)``."""

from __future__ import annotations

import time
import traceback
import tracemalloc
from pathlib import Path
from typing import Any

CONTENTS = 12
"""Distinct contents every ingest worker adds (the same bytes in every worker)."""
BUILTINS = 5
"""Records with fixed ids every ingest worker upserts (as seeding built-ins at start-up would)."""


def content(i: int) -> bytes:
    """The i-th shared content; the last one is large enough for a multipart upload."""
    from assetry_fsspec.storage import SINGLE_PUT_MAX

    if i == CONTENTS - 1:
        return bytes([i]) * (SINGLE_PUT_MAX + 1024 * 1024)
    return f"shared content {i} ".encode() * (50 * (i + 1))


def builtin_id(i: int) -> str:
    return f"builtin-{i:02d}"


def ingest(worker: int, settings: dict[str, Any], barrier: Any, results: Any) -> None:
    """Open the store, then (all workers at once) add every shared content under this worker's labels,
    in several catalog commits; upsert the same built-in records as every other worker; read assets
    (usage counters folded by every worker into the same rows)."""
    try:
        from datetime import UTC, datetime

        import attrs

        import assetry
        from assetry.digests import digest_bytes
        from assetry.model import Asset, Kind

        barrier.wait(timeout=120)
        with assetry.open(**settings) as store:
            items = [(content(i), {"label": f"w{worker}-{i}.bin"}) for i in range(CONTENTS)]
            report = store.add_many(items, batch_size=4, tags=[f"worker-{worker}"])
            base = Asset(
                id=builtin_id(0),
                label="builtin.bin",
                kind=Kind.FILE,
                media_type="application/octet-stream",
                size=len(content(0)),
                digest=digest_bytes(content(0)),
                created_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
            builtins = [
                attrs.evolve(base, id=builtin_id(i), label=f"builtin-{i}.bin") for i in range(BUILTINS)
            ]
            store.catalog.upsert(builtins)
            for asset in report.assets:
                store.read(asset.id)
            for i in range(BUILTINS):
                store.record_use(builtin_id(i), "view")
        results.put(("ok", [a.id for a in report.assets]))
    except BaseException:
        results.put(("error", f"worker {worker}:\n{traceback.format_exc()}"))


def measure_put(settings: dict[str, Any], directory: str, how: str, results: Any) -> None:
    """Peak Python memory (tracemalloc) and time of storing every file of a directory, ``how`` being
    ``put_many`` or ``put`` (one at a time)."""
    try:
        from assetry.backends import StorageSpec
        from assetry.content import Content
        from assetry_fsspec.storage import FsspecBlobStore

        spec = StorageSpec(url=settings["url"], digest="blake3", options=settings["options"])
        store = FsspecBlobStore.from_spec(spec)
        store.has("blake3:" + "00" * 32)  # the client and its connection pool exist before measuring
        contents = [Content.from_path(path) for path in sorted(Path(directory).iterdir())]
        tracemalloc.start()
        started = time.perf_counter()
        stored = store.put_many(contents) if how == "put_many" else [store.put(c) for c in contents]
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        results.put(("ok", {"peak": peak, "seconds": seconds, "written": sum(s.written for s in stored)}))
    except BaseException:
        results.put(("error", traceback.format_exc()))
