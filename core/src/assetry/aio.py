"""`AsyncStore`: the same API for code running in an event loop.

Every call runs the synchronous `Store` method in a worker thread (`asyncio.to_thread`), so disk, network
and LanceDB work never blocks the loop. Calls that write are serialised by a lock; reads run concurrently.
A thread cannot be stopped: a call cancelled (or timed out) while its thread runs waits for the thread
before it raises `CancelledError`, so a cancelled write may have happened, and the next write still starts
after it. `close` waits for the calls in flight; later calls raise `StoreClosed`.

    async with await assetry.aio.open(root="./assets") as store:
        asset = await store.add("out.png", prompt="a fox")
        hits = await store.search("fox")
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from assetry.content import Source
from assetry.errors import StoreClosed
from assetry.model import Asset, GcReport, Hit, Page, StoreStats
from assetry.store import DeleteReport, IngestReport, Store
from assetry.store import open as open_store

R = TypeVar("R")


async def open(*args: Any, **kwargs: Any) -> AsyncStore:
    """`assetry.open` in a worker thread; takes the same arguments."""
    return AsyncStore(await asyncio.to_thread(functools.partial(open_store, *args, **kwargs)))


class AsyncStore:
    """Async methods mirroring `Store`; see its docstrings for the arguments."""

    def __init__(self, store: Store) -> None:
        self.sync = store
        self._writes = asyncio.Lock()
        self._running: set[asyncio.Future[Any]] = set()
        self._closing = False

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        if self._closing:
            raise StoreClosed("the store is closed; open it again (assetry.aio.open) to use it")
        call = asyncio.ensure_future(asyncio.to_thread(functools.partial(fn, *args, **kwargs)))
        self._running.add(call)
        call.add_done_callback(self._running.discard)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The thread runs on: wait for it (a write keeps the write lock meanwhile), then give up.
            await asyncio.wait([call])
            raise

    async def _write(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        async with self._writes:
            return await self._run(fn, *args, **kwargs)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for the calls in flight, then close the store."""
        async with self._writes:
            if self._closing:
                return
            self._closing = True
            if self._running:
                await asyncio.wait(list(self._running))
            await asyncio.to_thread(self.sync.close)

    async def add(self, source: Source, /, **fields: Any) -> Asset:
        return await self._write(self.sync.add, source, **fields)

    async def add_many(self, items: Source | Iterable[Any], **options: Any) -> IngestReport:
        return await self._write(self.sync.add_many, items, **options)

    async def get(self, asset_id: str) -> Asset:
        return await self._run(self.sync.get, asset_id)

    async def get_many(self, asset_ids: Iterable[str]) -> dict[str, Asset]:
        return await self._run(self.sync.get_many, asset_ids)

    async def resolve(self, id_or_prefix: str) -> Asset:
        return await self._run(self.sync.resolve, id_or_prefix)

    async def read(self, asset_id: str | Asset, *, actor: str | None = None) -> bytes:
        return await self._run(self.sync.read, asset_id, actor=actor)

    async def record_use(self, asset_id: str, action: str, *, actor: str | None = None) -> None:
        await self._run(self.sync.record_use, asset_id, action, actor=actor)

    async def url(self, asset_id: str, *, expires: timedelta | int = 3600, actor: str | None = None) -> str:
        return await self._run(self.sync.url, asset_id, expires=expires, actor=actor)

    async def export(
        self, assets: Iterable[str] | Mapping[str, str], directory: str | os.PathLike[str], **options: Any
    ) -> dict[str, Path]:
        return await self._run(self.sync.export, assets, directory, **options)

    async def find(self, **filters: Any) -> Page:
        return await self._run(self.sync.find, **filters)

    async def search(self, text: str | None = None, **options: Any) -> list[Hit]:
        return await self._run(self.sync.search, text, **options)

    async def similar(self, to: str | Sequence[float], **options: Any) -> list[Hit]:
        return await self._run(self.sync.similar, to, **options)

    async def update(self, asset_id: str, **changes: Any) -> Asset:
        return await self._write(self.sync.update, asset_id, **changes)

    async def pin(self, asset_id: str, pinned: bool = True) -> Asset:
        return await self._write(self.sync.pin, asset_id, pinned)

    async def delete(self, asset_ids: str | Iterable[str], *, actor: str | None = None) -> DeleteReport:
        return await self._write(self.sync.delete, asset_ids, actor=actor)

    async def gc(self, quota: int | str | None = None, *, dry_run: bool = False) -> GcReport:
        return await self._write(self.sync.gc, quota, dry_run=dry_run)

    async def stats(self) -> StoreStats:
        return await self._run(self.sync.stats)

    async def flush(self) -> None:
        await self._write(self.sync.flush)
