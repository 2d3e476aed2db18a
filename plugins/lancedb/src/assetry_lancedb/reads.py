"""Point reads (records by id, usage counters, nearest neighbours, full-text matches) through LanceDB's
async API.

LanceDB's synchronous tables wrap the async ones, and each synchronous query also asks for the table's
schema three times (to decide whether blob columns need row ids), each time a round trip to LanceDB's
event loop and, with ``read_consistency_interval=0``, a check for a newer version. Measured at 1M rows:
a 10-hit vector query took ~5.9 ms through the synchronous API and ~4.5 ms through the async one, and a
lookup of 10 usage rows by id ~1.7 ms and ~0.9 ms. These reads are the latency users feel (`get`,
`search`), so they go through the async API; everything else stays synchronous.

The async connection shares the synchronous one's `lancedb.Session` (one index and metadata cache, not
two) and runs on its own event-loop thread. A record read and the read of its usage counters go to that
thread together, in one hand-over (each costs ~0.3 ms, more on a busy machine): side by side when the ids
are known, one after the other for the hits of a vector query.

Usage counters come from a copy of the whole ``usage`` table kept in memory while it is small
(`USAGE_SNAPSHOT_MAX_ROWS`) and read again whenever its version changes: a lookup of 10 ids cost
~1.0-1.5 ms at 1M rows (about a seventh of a vector search), asking for the table's version ~0.2 ms.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, TypeVar

import attrs
import lancedb
import numpy as np
import pyarrow as pa

from assetry_lancedb import rows, sql
from assetry_lancedb.rows import ASSETS, USAGE

T = TypeVar("T")

USAGE_SNAPSHOT_MAX_ROWS = 20_000
"""A ``usage`` table of at most this many rows (assets ever used) is read whole, once per version, and
lookups are answered from that copy (a few MB); a larger one is queried for the ids asked about. The
version is checked on every lookup (it follows other processes' commits as the other reads do), so a
copy is never older than a query would be. Each commit of usage (a fold, every ``flush_events`` reads
or ``flush_seconds``) makes the next lookup read the table again: ~10 ms at 20,000 rows."""


@attrs.frozen
class _UsageSnapshot:
    version: int
    table: pa.Table | None  # None: too large to keep, query it
    positions: dict[str, int]


class AsyncReads:
    """Read-only handles on a catalog's tables, opened on first use."""

    def __init__(
        self,
        uri: str,
        *,
        session: lancedb.Session,
        read_consistency: timedelta,
        storage_options: dict[str, str] | None,
    ) -> None:
        self._uri = uri
        self._session = session
        self._read_consistency = read_consistency
        # With a consistency interval, these handles would not see this process's own writes (made
        # through the synchronous handles) until it passes: `written` makes the next read catch up.
        self._catch_up = read_consistency > timedelta(0)
        self._storage_options = storage_options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="assetry-catalog-reads", daemon=True
        )
        self._thread.start()
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._stale: set[str] = set()
        self._usage_snapshot: _UsageSnapshot | None = None

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return wait(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def _table(self, name: str) -> Any:
        table = self._tables.get(name)
        if table is None:
            if self._db is None:
                self._db = await lancedb.connect_async(
                    self._uri,
                    read_consistency_interval=self._read_consistency,
                    storage_options=self._storage_options,
                    session=self._session,
                )
            table = self._tables[name] = await self._db.open_table(name)
        elif name in self._stale:
            await table.checkout_latest()
        self._stale.discard(name)
        return table

    def written(self, name: str) -> None:
        """This process wrote to table ``name``: the next read must see it."""
        if self._catch_up:
            self._stale.add(name)

    async def _rows(self, name: str, where: str | None, columns: Sequence[str]) -> pa.Table:
        table = await self._table(name)
        query = table.query().select(list(columns))
        return await (query.where(where) if where else query).to_arrow()

    def rows(self, name: str, where: str | None, columns: Sequence[str]) -> pa.Table:
        """The rows of table ``name`` matching ``where`` (all of them for None)."""
        return self._run(self._rows(name, where, columns))

    async def _usage(self, ids: Sequence[str]) -> pa.Table:
        table = await self._table(USAGE)
        version = await table.version()
        snapshot = self._usage_snapshot
        if snapshot is None or snapshot.version != version:
            snapshot = self._usage_snapshot = await _snapshot(table, version)
        if snapshot.table is None:
            return await self._rows(USAGE, sql.in_list(rows.PRIMARY_KEY, ids), rows.USAGE_SCHEMA.names)
        found = [snapshot.positions[i] for i in dict.fromkeys(ids) if i in snapshot.positions]
        return snapshot.table.take(pa.array(found, pa.int64()))

    def usage(self, ids: Sequence[str]) -> pa.Table:
        """The ``usage`` rows of ``ids`` (ids never used have none)."""
        return self._run(self._usage(ids))

    async def _text(
        self, text: str, *, column: str, where: str | None, columns: Sequence[str], limit: int
    ) -> pa.Table:
        table = await self._table(ASSETS)
        query = table.query().nearest_to_text(text, columns=[column]).select([*columns, "_score"])
        query = query.limit(limit)
        return await (query.where(where) if where else query).to_arrow()

    def text(
        self, text: str, *, column: str, where: str | None, columns: Sequence[str], limit: int
    ) -> Future[pa.Table]:
        """Full-text (BM25) matches in ``assets``, best first, ``_score`` included, the filter applied
        first; started now on the reads' event loop, its result collected from the future (a hybrid
        search runs its vector search meanwhile)."""
        return asyncio.run_coroutine_threadsafe(
            self._text(text, column=column, where=where, columns=columns, limit=limit), self._loop
        )

    def rows_and_usage(
        self, where: str, columns: Sequence[str], ids: Sequence[str]
    ) -> tuple[pa.Table, pa.Table]:
        """Rows of ``assets`` matching ``where``, and the usage rows of ``ids``, read side by side."""

        async def both() -> tuple[pa.Table, pa.Table]:
            return await asyncio.gather(self._rows(ASSETS, where, columns), self._usage(ids))

        return self._run(both())

    def nearest(
        self,
        vector: Sequence[float],
        *,
        column: str,
        metric: str,
        nprobes: int,
        refine_factor: int,
        where: str | None,
        columns: Sequence[str],
        limit: int,
    ) -> tuple[pa.Table, pa.Table]:
        """Approximate nearest rows of ``assets`` (``_distance`` included, filter applied first), and
        the usage rows of those hits."""

        async def query() -> tuple[pa.Table, pa.Table]:
            table = await self._table(ASSETS)
            # As float32, the column's type: a list of Python floats is converted and cast on every
            # query (measured ~0.2 ms of a ~4.5 ms query at 1M rows).
            query_vector = np.asarray(vector, dtype=np.float32)
            search = table.query().nearest_to(query_vector).column(column).distance_type(metric)
            search = search.nprobes(nprobes).refine_factor(refine_factor).limit(limit)
            search = search.select([*columns, "_distance"])
            if where:
                search = search.where(where)
            hits = await search.to_arrow()
            return hits, await self._usage(hits.column(rows.PRIMARY_KEY).to_pylist())

        return self._run(query())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for table in self._tables.values():
            self._run(_close(table))
        self._tables.clear()
        if self._db is not None:
            self._run(_close(self._db))
            self._db = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def wait(future: Future[T]) -> T:
    """The result of a read started on the reads' loop; the read is cancelled if the wait is broken
    off (an error, or Ctrl-C)."""
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


async def _snapshot(table: Any, version: int) -> _UsageSnapshot:
    """The ``usage`` table at (at least) ``version``, whole if it is small enough to keep."""
    if await table.count_rows() > USAGE_SNAPSHOT_MAX_ROWS:
        return _UsageSnapshot(version, None, {})
    whole = await table.query().select(rows.USAGE_SCHEMA.names).to_arrow()
    positions = {asset_id: i for i, asset_id in enumerate(whole.column(rows.PRIMARY_KEY).to_pylist())}
    return _UsageSnapshot(version, whole, positions)


async def _close(table: Any) -> None:
    close = getattr(table, "close", None)
    if close is not None:
        close()
