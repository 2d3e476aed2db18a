"""The async API runs the same store without blocking the event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import assetry.aio
from assetry.errors import AssetNotFound, StoreClosed, ValidationError


def test_async_store_round_trip(tmp_path: Path) -> None:
    async def main() -> None:
        async with await assetry.aio.open(root=tmp_path / "s", vectors={"dimension": 2}) as store:
            a = await store.add(b"one", label="one.txt", prompt="a lighthouse", embedding=[1.0, 0.0])
            b = await store.add(b"two", label="two.txt", prompt="a meadow", embedding=[0.9, 0.1])
            assert await store.read(a.id) == b"one"
            assert (await store.find()).total == 2
            assert [h.asset.id for h in await store.search("lighthouse")] == [a.id]
            assert [h.asset.id for h in await store.similar(a.id)] == [b.id]
            await store.update(a.id, add_tags=["x"])
            assert (await store.get(a.id)).tags == ("x",)
            assert list(await store.get_many([b.id, "nope", a.id])) == [b.id, a.id]
            assert list(await store.get_many(a.id)) == [a.id]  # one id, not its characters
            report = await store.add_many(b"three", label="three.txt")  # one source, not its bytes
            assert [x.label for x in report.assets] == ["three.txt"]
            await store.delete(report.assets[0].id, actor="tester")
            await store.flush()
            assert (await store.get(a.id)).access_count == 1
            await store.delete(b.id)
            with pytest.raises(AssetNotFound):
                await store.get(b.id)
            with pytest.raises(ValidationError):
                await store.add(b"bad", label="../x")
            assert (await store.stats()).usage.assets == 1

    asyncio.run(main())


def test_calls_do_not_block_the_loop(tmp_path: Path) -> None:
    """While a batch ingest runs in its worker thread, other coroutines keep running."""

    async def main() -> int:
        ticks = 0
        async with await assetry.aio.open(root=tmp_path / "s", vectors={"dimension": 2}) as store:

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            task = asyncio.create_task(ticker())
            await store.add_many([(f"content {i}".encode(), {"label": f"f{i}"}) for i in range(200)])
            task.cancel()
        return ticks

    assert asyncio.run(main()) > 10


def test_a_cancelled_write_finishes_before_the_next_starts_and_close_waits(tmp_path: Path) -> None:
    """A worker thread cannot be stopped: a write cancelled by a timeout used to release the write lock
    at once (two ingests then ran together) and `close` did not wait for reads in flight (a read could
    then hang on a closed event loop)."""
    running = 0
    most = 0

    def counted(original):  # type: ignore[no-untyped-def]
        def add_many(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                return original(*args, **kwargs)
            finally:
                running -= 1

        return add_many

    async def main() -> None:
        store = await assetry.aio.open(root=tmp_path / "s", vectors={"dimension": 2})
        store.sync.add_many = counted(store.sync.add_many)  # type: ignore[method-assign]
        big = tmp_path / "big"
        big.mkdir()
        for i in range(300):
            (big / f"{i}.bin").write_bytes(bytes([i % 256]) * 50_000 + i.to_bytes(4, "big"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.add_many([big]), 0.01)
        assert running == 0  # the timed-out ingest finished before wait_for raised
        assert (await store.find()).total == 300  # and it did happen, as documented
        await store.add(b"next", label="next")
        assert most == 1
        reads = [asyncio.ensure_future(store.find(limit=5)) for _ in range(20)]
        await asyncio.sleep(0)
        await store.close()
        assert all(r.done() and r.exception() is None for r in reads)  # close waited for them
        with pytest.raises(StoreClosed):
            await store.get("anything")

    asyncio.run(main())
