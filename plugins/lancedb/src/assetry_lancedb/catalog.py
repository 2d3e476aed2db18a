"""`LanceCatalog`: the assetry catalog in LanceDB.

Three tables live under the catalog URL:

``assets``
    One wide row per asset (every `Asset` field, the embedding as a nullable fixed-size float32 vector,
    and ``search_text`` for full-text search). Kept nearly append-only, because every LanceDB update
    rewrites whole rows, vectors included.
``usage``
    The hot, mutable counters (``last_used``, ``access_count``), narrow and keyed by id, so recording
    accesses never rewrites asset rows.
``meta``
    Key/value facts fixed at creation: schema version, vector dimension and metric.

Every write of a batch is one LanceDB commit per table touched (one version), never one per asset:
measured, per-row commits cost thousands of versions and slow every later read. Commits that lose a race
with another process are retried with jittered exponential backoff; writes are idempotent by id.

On S3 (``s3://bucket/path``, endpoint and credentials in ``storage_options``) the same holds: the tables
declare their primary key, so concurrent upserts of the same new ids from several processes store each
once. Credentials never reach messages: opening errors become a one-line `ConfigError` naming
``catalog.url``, and any error whose message carries a configured secret is re-raised redacted.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, Bitmap, BTree, IvfSq, LabelList
from lancedb.query import ColumnOrdering

from assetry.backends import Catalog, CatalogSpec
from assetry.errors import (
    AssetNotFound,
    AssetryError,
    BackendError,
    ConfigError,
    StoreNotFound,
    ValidationError,
)
from assetry.model import (
    SCHEMA_VERSION,
    Asset,
    Cursor,
    Filter,
    Hit,
    LruRow,
    SearchQuery,
    Status,
    StorageUsage,
    UsageEvent,
)
from assetry.redact import redact_text, secret_values
from assetry_lancedb import lru, rows, sql
from assetry_lancedb.options import LanceOptions
from assetry_lancedb.reads import AsyncReads, wait
from assetry_lancedb.rows import ASSETS, META, USAGE

log = logging.getLogger(__name__)

T = TypeVar("T")


METRICS = ("cosine", "l2", "dot")

RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al. 2009): a hit at rank r scores 1 / (RRF_K + r)."""

ID_CHUNK = 1_000
"""Ids per ``IN (...)`` list in reads; longer lists are split into several queries."""

DELETE_CHUNK = 10_000
"""Ids per delete commit."""

WRITE_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.05

FIND_ATTEMPTS = 3
"""Times `find` reads a page's ids again when a record vanished between reading the ids and the records."""

ANN_MAX_PARTITIONS = 1_024
ANN_FLAT_KMEANS_PARTITIONS = 256
"""IVF partitions: sqrt(rows) (LanceDB's rule), at most ANN_MAX_PARTITIONS, and never between
ANN_FLAT_KMEANS_PARTITIONS and twice that. Measured (IVF_SQ, refined, 384-d; bench notes item 21):

- More, smaller partitions are faster at 1M rows: 1,000 partitions of ~1,000 vectors gave recall@10 0.989
  at 12 probes in ~3.7 ms per query, 256 partitions 0.979 at 13 probes in ~6.9 ms (index in memory).
- LanceDB trains more than 256 partitions by splitting 256 k-means clusters further (hierarchical
  k-means), and a partial split loses recall: at 100k rows, 316 partitions gave 0.97-0.98 at 32 probes
  (three builds), 256 gave 0.99-0.997 at 13, 512 gave 0.98-0.995 at 26. So sqrt(rows) between 256 and
  512 gets 256.
- The cap bounds the build: k-means trains on 256 vectors per partition against every centroid, so its
  cost grows with the square of the partitions (~50 s at 1,024 on 2 cores)."""

ANN_NPROBES = 12
ANN_PROBE_FRACTION = 0.02
ANN_MIN_CANDIDATES = 5_000
"""IVF partitions probed per approximate query: ANN_NPROBES, or this share of the partitions, or as many
as it takes to meet (expected) ANN_MIN_CANDIDATES rows the filter keeps, whichever is most. A filter
thins every partition out: measured at 100k rows with a filter keeping 25%, 13 probes (~1,300 of its
rows) gave recall@10 0.954, 26 probes 0.965 and 52 (~5,000 rows) 0.979, each in ~7.5 ms. At 1M rows
(1,024 partitions), 12 to 40 probes all took 3.7-4.8 ms, with recall 0.989 to 0.996."""

ANN_REFINE_FACTOR = 2
"""Approximate queries rank ``limit x ANN_REFINE_FACTOR`` candidates by their 8-bit codes, then re-rank
them by the stored float32 vectors. The codes' rounding, not the partitions probed, was what capped
recall: measured at 1M rows, 16 or 32 probes of 256 partitions gave recall@10 0.96 without refinement,
and 4 to 10 probes with it 0.986-0.993, for ~1 ms more."""

ANN_MIN_FRACTION = 0.05
"""A filter keeping at least this share of the rows (or ``ann_min_rows`` of them) is searched through the
index with the filter applied first; a more selective one exactly, over just the rows it keeps."""

EXACT_NUMPY_MAX_ROWS = 200_000
"""Exact searches over at most this many rows read the vectors and rank them in numpy (at most ~300 MB
of 384-d vectors at once); larger ones (only without an index) stream through LanceDB's flat search."""

SCAN_BATCH_ROWS = 65_536
"""Rows per batch of a scan. LanceDB hands each batch from its event-loop thread to Python separately, and
its default batch is 1,024 rows: measured at 1M rows, reading the ``size`` column took 0.23 s in 1,024-row
batches and 5 ms in 64k-row ones (the id, digest and size columns of a GC scan: 0.5 s and 0.2 s)."""

VECTOR_INDEX_RECHECK_SECONDS = 5.0
"""How long "no vector index" is believed before asking LanceDB again (another process may build it)."""

# Lance's messages for a commit that lost a race (its own retries exhausted) or conflicted with another
# process's commit. Seen on S3 with several writers; every write here is idempotent by id, so safe to run
# again on top of the other commit.
_CONFLICT_MARKERS = (
    "too many concurrent writers",
    "commit conflict",
    "retryable",
    "incompatible transaction",
)

_PRIMARY_KEY_METADATA = b"lance-schema:unenforced-primary-key:position"

_LRU_COLUMNS = ("id", "digest", "size", "created_at", "label", "pinned", "status", "tenant")
"""What quota GC reads of every record (`LanceCatalog.lru_scan`)."""

# Scalar indexes that keep id lookups, merges and common filters off full scans.
_SCALAR_INDEXES: dict[str, tuple[tuple[str, Callable[[], Any]], ...]] = {
    ASSETS: (
        (rows.PRIMARY_KEY, BTree),
        ("digest", BTree),
        ("tenant", Bitmap),
        ("kind", Bitmap),
        ("tags", LabelList),
    ),
    USAGE: ((rows.PRIMARY_KEY, BTree),),
}

# Indexes for the filters users narrow large catalogs with (`find`, `search`): by project, model, job or
# conversation, children of an asset, time range, label. Measured at 1M rows (docs/benchmarks.md): a
# vector search within a project of 5,000 assets took ~150 ms with the project column scanned and ~50 ms
# with it indexed; each of these indexes builds in under 0.2 s, and the ten take ~57 MB.
_FILTER_INDEXES: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("project", BTree),
    ("model", BTree),
    ("created_by", BTree),
    ("agent_id", BTree),
    ("conversation_id", BTree),
    ("task_id", BTree),
    ("label", BTree),
    ("created_at", BTree),
    ("status", Bitmap),
    ("parent_ids", LabelList),
)

FILTER_INDEX_MIN_ROWS = 10_000
"""Compaction builds the filter indexes once the table holds this many records; below it a scan takes a
few milliseconds, and each index would add a commit to every compaction of a small store."""


class CatalogWriteError(AssetryError):
    """LanceDB reported success but the rows are not as written, even after a second attempt."""


class CatalogError(BackendError):
    """LanceDB failed (storage unreachable, a request refused, a disk error): the catalog and the gist of
    LanceDB's message, credentials redacted."""


def _with_catalog_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a catalog method so that LanceDB's own failures, and any exception whose message (or any
    exception it chains) carries a configured secret, become a redacted `CatalogError`, raised without the
    original attached. Other exceptions (assetry's, and programming errors) pass unchanged."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: LanceCatalog, *args: Any, **kwargs: Any) -> Iterator[Any]:
            failure: CatalogError | None = None
            try:
                yield from method(self, *args, **kwargs)
            except Exception as exc:
                failure = self._as_catalog_error(exc)
                if failure is None:
                    raise
            if failure is not None:
                raise failure

        return generator

    @functools.wraps(method)
    def call(self: LanceCatalog, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            failure = self._as_catalog_error(exc)
            if failure is None:
                raise
        raise failure

    return call


def _catalog_errors(cls: type[T]) -> type[T]:
    """Apply `_with_catalog_errors` to every `Catalog` method the class defines."""
    for name in sorted(Catalog.__abstractmethods__ | {"compact", "lru_scan"}):
        method = cls.__dict__.get(name)
        if method is not None and name != "describe":
            setattr(cls, name, _with_catalog_errors(method))
    return cls


@_catalog_errors
class LanceCatalog(Catalog):
    """A `Catalog` in LanceDB, on a local directory or an object store URL (``s3://bucket/path``).

    Reads see other processes' commits within ``read_consistency_seconds`` (default 0: always).
    Full-text search uses LanceDB's native index over label, prompt and tags. Vector search is exact
    (``bypass_vector_index``) unless an IVF_PQ index exists and the filter matches at least
    ``ann_min_rows`` rows: measured, approximate search over a selective filter loses most of its recall,
    while exact search over the few matching rows is fast.
    """

    def __init__(self, spec: CatalogSpec) -> None:
        self.options = _options(spec.options)
        self.dimension = _dimension(spec.dimension)
        self.metric = _metric(spec.metric)
        uri, self._description = _location(spec.url)
        self._create = spec.create
        self._secrets = secret_values(self.options.storage_options, spec.url)
        self._lock = threading.Lock()
        self._commits = 0
        self._compacting = False
        self._fts_ready = False
        self._vector_index = False
        self._vector_index_checked = -math.inf
        self._ann_rows = 0
        self._ann_partitions = 0  # as recorded when the index was built; 0: not recorded
        self._indexed: set[str] = set()  # single-column indexes (`_refresh_index_listing`)
        self._other_tenants = False
        failure: str | None = None
        try:
            self._open(uri)
        except AssetryError:
            raise
        except Exception as exc:
            failure = _brief(redact_text(f"{exc}", self._secrets)) or type(exc).__name__
        if failure is not None:
            # A value object_store could not parse is an option's fault, not the URL's.
            field = "catalog.options.storage_options" if "Config error" in failure else "catalog.url"
            # Raised outside the handler: the original error (which may echo options) is not attached.
            raise ConfigError(field, f"cannot open the catalog {self._description}: {failure}")

    def _open(self, uri: str) -> None:
        session = lancedb.Session()
        consistency = timedelta(seconds=self.options.read_consistency_seconds)
        storage_options = dict(self.options.storage_options) or None
        if not self._create and "://" not in uri and not os.path.isdir(uri):
            # Before connecting, which creates a local catalog's directory.
            raise StoreNotFound(f"the catalog {self._description} does not exist")
        self._db = lancedb.connect(
            uri, read_consistency_interval=consistency, storage_options=storage_options, session=session
        )
        self._refuse_pre_record_layout()
        # The meta table is what makes a catalog exist: only it may be missing where nothing is created.
        self._meta, created_meta = self._open_table(META, rows.META_SCHEMA, "key", create=self._create)
        self._check_meta()
        self._assets_schema = rows.assets_schema(self.dimension)
        self._assets, created_assets = self._open_table(ASSETS, self._assets_schema, rows.PRIMARY_KEY)
        stored = rows.vector_dimension(self._assets.schema)
        if stored != self.dimension:
            raise ConfigError(
                "vectors.dimension",
                f"is {self.dimension}, but the catalog {self._description} was created with {stored}",
            )
        self._usage, created_usage = self._open_table(USAGE, rows.USAGE_SCHEMA, rows.PRIMARY_KEY)
        if created_meta or created_assets or created_usage:
            # Indexes on empty tables cost nothing, and merges use the id index from the first batch on.
            self._ensure_scalar_indexes()
            self._ensure_fts()
        self._prewarm()
        # Last: nothing above reads through it, and a failed open leaves no thread behind.
        self._reads = AsyncReads(
            uri, session=session, read_consistency=consistency, storage_options=storage_options
        )

    def _refuse_pre_record_layout(self) -> None:
        """Refuse, before writing anything, a catalog whose records are not packed (pre-release)."""
        try:
            assets = self._db.open_table(ASSETS)
        except ValueError:
            return  # no assets table yet
        if rows.RECORD not in assets.schema.names:
            raise ConfigError(
                "catalog.url",
                f"the catalog {self._description} was written by a pre-release assetry (no packed record "
                "column); export its assets with that version (`assetry export`) and add them to a new "
                "catalog",
            )

    def _as_catalog_error(self, exc: BaseException) -> CatalogError | None:
        """The `CatalogError` an error becomes: a redacted copy if its chain mentions a secret, the gist if
        it is LanceDB's own failure; None for anything else (assetry's errors, programming errors)."""
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and current not in chain:
            chain.append(current)
            current = current.__cause__ or current.__context__
        texts = [f"{e} {e!r}" for e in chain]
        if any(redact_text(text, self._secrets) != text for text in texts):
            return CatalogError(
                f"{self._description}: {redact_text(f'{type(exc).__name__}: {exc}', self._secrets)}"
            )
        if isinstance(exc, (RuntimeError, OSError, ValueError)) and not isinstance(exc, AssetryError):
            # What LanceDB raises when storage fails (RuntimeError "lance error: ...", ValueError
            # "Failed to connect ...", OSError): one line naming the catalog, not a Rust debug dump.
            return CatalogError(f"{self._description}: {redact_text(_brief(str(exc)), self._secrets)}")
        return None

    # -- opening --------------------------------------------------------------------------------------

    def _open_table(self, name: str, schema: pa.Schema, key: str, *, create: bool = True) -> tuple[Any, bool]:
        """Open a table, creating it (with its primary key) if it does not exist yet; with ``create``
        False, `StoreNotFound` instead."""
        created = False
        table: Any
        try:
            table = self._db.open_table(name)
        except ValueError as missing:
            if "not found" not in str(missing).lower():
                raise
            if not create:
                raise StoreNotFound(f"the catalog {self._description} does not exist") from None
            try:
                table = self._db.create_table(name, schema=schema)
                created = True
                log.debug("created table %s in %s", name, self._description)
            except (ValueError, OSError, RuntimeError) as create_error:
                # Another process created it between our look and our create.
                try:
                    table = self._db.open_table(name)
                except ValueError:
                    raise create_error from None
        if not _has_primary_key(table.schema, key):
            # Without a declared key, two processes upserting the same new ids both insert them.
            try:
                self._retry(f"declare the key of {name}", lambda: table.set_unenforced_primary_key(key))
            except Exception:
                # Another process opening the catalog at the same moment declared it first (LanceDB then
                # reports a conflicting transaction, or a key that cannot be changed once set).
                table = self._db.open_table(name)
                if not _has_primary_key(table.schema, key):
                    raise
        return table, created

    def _read_meta(self) -> dict[str, str]:
        table = self._scan(self._meta, None, ["key", "value"])
        return dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True))

    def _write_meta(self, values: dict[str, str], *, overwrite: bool) -> None:
        table = pa.Table.from_pydict(
            {"key": list(values), "value": list(values.values())}, schema=rows.META_SCHEMA
        )

        def write() -> object:
            builder = self._meta.merge_insert("key")
            if overwrite:
                builder = builder.when_matched_update_all()
            return builder.when_not_matched_insert_all().execute(table)

        self._retry("write catalog facts", write)

    def _check_meta(self) -> None:
        wanted = {
            "schema_version": str(SCHEMA_VERSION),
            "dimension": str(self.dimension),
            "metric": self.metric,
        }
        facts = self._read_meta()
        missing = {key: value for key, value in wanted.items() if key not in facts}
        if missing:
            # Insert-only: when two processes create the catalog at once, the first one's facts stand.
            self._write_meta(missing, overwrite=False)
            facts = self._read_meta()
        version = int(facts["schema_version"])
        if version > SCHEMA_VERSION:
            raise ConfigError(
                "catalog.url",
                f"the catalog {self._description} has schema version {version}; this assetry reads "
                f"versions up to {SCHEMA_VERSION} (upgrade assetry)",
            )
        dimension = int(facts["dimension"])
        if dimension != self.dimension:
            raise ConfigError(
                "vectors.dimension",
                f"is {self.dimension}, but the catalog {self._description} was created with {dimension}; "
                f"set vectors.dimension = {dimension} or use a new catalog",
            )
        if facts["metric"] != self.metric:
            raise ConfigError(
                "vectors.metric",
                f"is {self.metric!r}, but the catalog {self._description} was created with "
                f"{facts['metric']!r} (its vector index is built for that metric)",
            )

    # -- plumbing -------------------------------------------------------------------------------------

    def _retry(self, what: str, write: Callable[[], T]) -> T:
        """Run a write, again after a jittered, growing pause if it lost a commit race."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return write()
            except Exception as exc:
                message = str(exc).lower()
                if attempt == WRITE_ATTEMPTS or not any(m in message for m in _CONFLICT_MARKERS):
                    raise
                delay = RETRY_BASE_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.debug("%s: commit conflict (attempt %d), retrying in %.2f s", what, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _committed(self, table: str, count: int) -> None:
        """Note one data commit; compact every ``compact_every`` of them."""
        log.debug("committed %d rows to %s", count, table)
        self._reads.written(table)
        every = self.options.compact_every
        if not every:
            return
        with self._lock:
            self._commits += 1
            due = self._commits >= every and not self._compacting
            if due:
                self._commits = 0
                self._compacting = True
        if due:
            try:
                self.compact()
            except Exception:
                # The write itself succeeded; a failed compaction only postpones the clean-up.
                log.warning("automatic compaction of %s failed", self._description, exc_info=True)
            finally:
                self._compacting = False

    @staticmethod
    def _scan(table: Any, where: str | None, columns: Sequence[str]) -> pa.Table:
        query = table.search().select(list(columns)).limit(None)
        if where:
            query = query.where(where)
        return query.to_batches(batch_size=SCAN_BATCH_ROWS).read_all()

    def _rows_for_ids(
        self, name: str, ids: Sequence[str], columns: Sequence[str], extra: str | None = None
    ) -> pa.Table:
        """Rows of table ``name`` whose id is listed (and which match ``extra``), a query per chunk."""
        parts = [
            self._reads.rows(name, _both(sql.in_list(rows.PRIMARY_KEY, chunk), extra), columns)
            for chunk in _chunks(ids, ID_CHUNK)
        ]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _existing_ids(self, ids: Sequence[str], table: Any = None) -> set[str]:
        found = self._lookup(self._assets if table is None else table, rows.PRIMARY_KEY, ids)
        return set(found.to_pylist())

    def _lookup(self, table: Any, column: str, values: Sequence[str]) -> pa.ChunkedArray:
        """The column's values that are in ``values``, one per matching row.

        Up to `ID_CHUNK` values: one ``IN (...)`` query (through the column's index). More: one scan of
        the column, matched in Arrow. Measured at 1M rows, a 1,000-id query costs ~30 ms and a scan of the
        id column ~40 ms (the digest column ~85 ms), so looking up quota GC's 10,000 victims took 0.3-0.9 s
        in queries and is ~0.1 s as a scan."""
        if len(values) <= ID_CHUNK:
            return self._scan(table, sql.in_list(column, values), [column]).column(column)
        found = self._scan(table, None, [column]).column(column)
        return found.filter(pc.is_in(found, value_set=pa.array(values, pa.string())))

    def _usage_for(self, ids: Sequence[str]) -> dict[str, rows.Usage]:
        if not ids:
            return {}
        parts = [self._reads.usage(chunk) for chunk in _chunks(ids, ID_CHUNK)]
        return rows.usage_by_id(parts[0] if len(parts) == 1 else pa.concat_tables(parts))

    def _to_assets(self, table: pa.Table, usage: pa.Table | None = None) -> list[Asset]:
        """Records of an ``assets`` query result, in its order, with their usage counters (read here
        unless the ``usage`` rows of those ids are given)."""
        if usage is None:
            return rows.table_to_assets(table, self._usage_for(table.column(rows.PRIMARY_KEY).to_pylist()))
        return rows.table_to_assets(table, rows.usage_by_id(usage))

    def _check_batch(self, assets: Sequence[Asset]) -> list[str]:
        ids = [asset.id for asset in assets]
        repeated = [asset_id for asset_id, n in Counter(ids).items() if n > 1]
        if repeated:
            # LanceDB would store both rows of a repeated id (a merge does not deduplicate its source).
            raise ValidationError("id", f"{repeated[0]!r} appears more than once in the batch")
        for asset in assets:
            if asset.embedding is not None and len(asset.embedding) != self.dimension:
                raise ValidationError(
                    "embedding",
                    f"asset {asset.id!r} has {len(asset.embedding)} dimensions; this catalog stores "
                    f"{self.dimension} (vectors.dimension)",
                )
        return ids

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, assets: Sequence[Asset]) -> None:
        """Add new records in one commit; see `Catalog.insert`.

        Usage counters carried by the records (``last_used``, ``access_count``, as when restoring an
        export) are written to the usage table in a second commit, only when some record has them.
        The id check and the append are two steps: two processes inserting the same new id at the same
        moment can both succeed (callers make ids unique; upsert is the idempotent path).
        """
        if not assets:
            return
        ids = self._check_batch(assets)
        table = rows.assets_table(assets, self._assets_schema)
        existing = self._existing_ids(ids)
        if existing:
            first = next(asset_id for asset_id in ids if asset_id in existing)
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise ValidationError("id", f"{first!r} already exists{more}; nothing was inserted")
        self._retry("insert", lambda: self._assets.add(table))
        self._committed(ASSETS, len(assets))
        carried = [a for a in assets if a.access_count or a.last_used is not None]
        if carried:
            usage = rows.usage_table(
                [a.id for a in carried], [a.last_used for a in carried], [a.access_count for a in carried]
            )
            self._retry(
                "insert usage",
                lambda: (
                    self._usage.merge_insert(rows.PRIMARY_KEY)
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(usage)
                ),
            )
            self._committed(USAGE, len(carried))

    def upsert(self, assets: Sequence[Asset]) -> None:
        """Insert or replace records by id; see `Catalog.upsert`.

        Rows already stored exactly as given are not written again, so seeding the same records twice
        makes no commit at all. Usage counters are never touched.
        """
        self._merge_assets(assets, insert_missing=True)

    def update(self, assets: Sequence[Asset]) -> None:
        """Replace existing records; an unknown id raises `AssetNotFound` and nothing is written.
        Usage counters are not touched; unchanged rows are not rewritten."""
        self._merge_assets(assets, insert_missing=False)

    def _merge_assets(self, assets: Sequence[Asset], *, insert_missing: bool) -> None:
        if not assets:
            return
        what = "upsert" if insert_missing else "update"
        ids = self._check_batch(assets)
        table = rows.assets_table(assets, self._assets_schema)
        wanted = dict(zip(ids, table.to_pylist(), strict=True))
        columns = self._assets_schema.names
        # Two passes: lancedb #3515 / #3177, a merge can report success yet leave rows unchanged.
        for attempt in (1, 2):
            stored = self._rows_for_ids(ASSETS, ids, columns).to_pylist()
            current = {row[rows.PRIMARY_KEY]: row for row in stored}
            if not insert_missing:
                missing = [asset_id for asset_id in ids if asset_id not in current]
                if missing:
                    raise AssetNotFound(missing[0])
            changed = [i for i, asset_id in enumerate(ids) if current.get(asset_id) != wanted[asset_id]]
            if not changed:
                return
            if attempt > 1:
                log.warning(
                    "%s: %d rows were not written by the first merge; merging again", what, len(changed)
                )
            batch = table.take(changed)
            expected = sum(1 for i in changed if ids[i] in current)

            def merge(batch: pa.Table = batch) -> Any:
                builder = self._assets.merge_insert(rows.PRIMARY_KEY).when_matched_update_all()
                if insert_missing:
                    builder = builder.when_not_matched_insert_all()
                # A pa.Table with null vectors still trips LanceDB's vector check in merges; lengths were
                # checked above, so "null" only ever keeps nulls as nulls.
                return builder.execute(batch, on_bad_vectors="null")

            result = self._retry(what, merge)
            self._committed(ASSETS, len(changed))
            counts = (result.num_updated_rows, result.num_inserted_rows)
            if counts == (expected, len(changed) - expected):
                return
            log.warning(
                "%s: LanceDB reported %d updated and %d inserted rows, expected %d and %d; checking",
                what,
                *counts,
                expected,
                len(changed) - expected,
            )
        after = {row[rows.PRIMARY_KEY]: row for row in self._rows_for_ids(ASSETS, ids, columns).to_pylist()}
        wrong = [asset_id for asset_id in ids if after.get(asset_id) != wanted[asset_id]]
        if wrong:
            raise CatalogWriteError(
                f"LanceDB did not apply the {what} of {len(wrong)} record(s) (first: {wrong[0]!r}) after two "
                "attempts; see lancedb issues #3515 and #3177"
            )

    def delete(self, ids: Collection[str]) -> None:
        """Remove records and their usage counters; one delete per table (per 10,000 ids).

        Deleting nothing still makes a LanceDB version, so each delete first makes sure that one of its
        ids is stored (`_any_stored`), not which ones are.
        """
        wanted = list(dict.fromkeys([ids] if isinstance(ids, str) else ids))
        for name, table in ((ASSETS, self._assets), (USAGE, self._usage)):
            for chunk in _chunks(wanted, DELETE_CHUNK):
                if not chunk or not self._any_stored(table, chunk):
                    continue
                clause = sql.in_list(rows.PRIMARY_KEY, chunk)
                result = self._retry(f"delete from {name}", functools.partial(table.delete, clause))
                self._committed(name, int(getattr(result, "num_deleted_rows", len(chunk))))

    def _any_stored(self, table: Any, ids: Sequence[str]) -> bool:
        """Whether any of the ids has a row: the first `ID_CHUNK` of them are looked up in one query, the
        rest only if none of those has one. Ids read from the catalog a moment ago (quota GC's victims)
        are settled by that one query, where reading which of 10,000 ids exist took a scan of the id
        column (~0.1 s at 1M rows)."""
        head = ids[:ID_CHUNK]
        return bool(self._existing_ids(head, table)) or (
            len(ids) > len(head) and bool(self._existing_ids(ids[len(head) :], table))
        )

    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        """Fold access events into the usage table: one read of the current counters, one merge.

        Events for ids without a record are dropped. Several processes folding the same ids at the same
        moment can lose some counts (each adds to what it read); ``last_used`` stays within one flush.
        """
        if not events:
            return
        folded: dict[str, tuple[datetime, int]] = {}
        for event in events:
            at = _utc(event.at, "at")
            previous = folded.get(event.asset_id)
            folded[event.asset_id] = (max(previous[0], at), previous[1] + 1) if previous else (at, 1)
        ids = list(folded)

        def fold() -> int:
            live = self._existing_ids(ids)
            live_ids = [asset_id for asset_id in ids if asset_id in live]
            if not live_ids:
                return 0
            current = self._usage_for(live_ids)
            last_used: list[datetime | None] = []
            counts: list[int] = []
            for asset_id in live_ids:
                at, n = folded[asset_id]
                old_at, old_n = current.get(asset_id, (None, 0))
                last_used.append(at if old_at is None else max(at, old_at))
                counts.append(old_n + n)
            table = rows.usage_table(live_ids, last_used, counts)
            result = (
                self._usage.merge_insert(rows.PRIMARY_KEY)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(table)
            )
            expected = (len(current), len(live_ids) - len(current))
            if (result.num_updated_rows, result.num_inserted_rows) != expected:
                log.warning(
                    "usage merge reported %d updated and %d inserted rows, expected %d and %d",
                    result.num_updated_rows,
                    result.num_inserted_rows,
                    *expected,
                )
            return len(live_ids)

        written = self._retry("record usage", fold)
        if written:
            self._committed(USAGE, written)
        if written < len(ids):
            log.debug("dropped usage of %d ids without a record", len(ids) - written)

    # -- reads ----------------------------------------------------------------------------------------

    def get_many(self, ids: Collection[str], *, tenant: str | None = None) -> dict[str, Asset]:
        """Records by id, in the order asked, usage counters folded in; see `Catalog.get_many`."""
        wanted = list(dict.fromkeys([ids] if isinstance(ids, str) else ids))
        if not wanted:
            return {}
        found = self._records(wanted, sql.where_clause(Filter(tenant=tenant)))
        return {asset_id: found[asset_id] for asset_id in wanted if asset_id in found}

    def _records(self, ids: Sequence[str], clause: str | None) -> dict[str, Asset]:
        """The records of the listed ids that match the clause, with their usage counters."""
        found: dict[str, Asset] = {}
        for chunk in _chunks(ids, ID_CHUNK):
            where = _both(sql.in_list(rows.PRIMARY_KEY, chunk), clause)
            records, usage = self._reads.rows_and_usage(where, rows.ASSET_COLUMNS, chunk)
            found.update((a.id, a) for a in self._to_assets(records, usage))
        return found

    def ids_with_prefix(self, prefix: str, *, tenant: str | None = None, limit: int = 10) -> list[str]:
        """Ids starting with ``prefix``, in id order (for resolving abbreviated ids)."""
        if limit <= 0:
            return []
        clause = sql.where_clause(Filter(tenant=tenant), f"starts_with(id, {sql.quote(prefix)})")
        query = (
            self._assets.search()
            .where(clause)
            .select([rows.PRIMARY_KEY])
            .order_by([ColumnOrdering(column_name=rows.PRIMARY_KEY)])
            .limit(limit)
        )
        return list(query.to_arrow().column(rows.PRIMARY_KEY).to_pylist())

    def find(self, where: Filter, *, order: str, limit: int, offset: int) -> list[Asset]:
        """Records matching the filter, sorted in LanceDB by ``order`` then id, one page at a time."""
        ordering = sql.order_columns(order)
        if limit < 0:
            raise ValidationError("limit", f"must be >= 0, got {limit}")
        if offset < 0:
            raise ValidationError("offset", f"must be >= 0, got {offset}")
        if limit == 0:
            return []
        return self._page(sql.where_clause(where), ordering, limit, offset)

    def find_after(self, where: Filter, *, order: str, limit: int, after: Cursor) -> list[Asset]:
        """The page after a cursor, by its keys: a filter on the sort columns instead of an offset, so
        LanceDB keeps the top ``limit`` rows of a sort, not the top ``offset + limit`` (at 1M rows a page
        half-way took ~2 s by offset)."""
        ordering = sql.order_columns(order)
        if limit <= 0:
            raise ValidationError("limit", f"must be > 0, got {limit}")
        clause = sql.where_clause(where, sql.after_clause(ordering, after.key, after.id))
        return self._page(clause, ordering, limit, 0)

    def _page(
        self, clause: str | None, ordering: list[tuple[str, bool]], limit: int, offset: int
    ) -> list[Asset]:
        # Two reads: the page's ids, sorted by their keys alone, then the page's records by id.
        query = self._sorted_ids(ordering, clause).limit(limit).offset(offset)
        for _ in range(FIND_ATTEMPTS):
            ids = query.to_arrow().column(rows.PRIMARY_KEY).to_pylist()
            # The clause again: a record changed by another writer in between must still match.
            found = self._records(ids, clause)
            if len(found) == len(ids):
                break
            # A record was deleted or stopped matching in between: the page may now start elsewhere.
        return [found[asset_id] for asset_id in ids if asset_id in found]

    def ordered_ids(self, where: Filter, *, order: str) -> list[str]:
        """Every matching id in `find`'s order, from one sort of the order's columns and the ids (at 1M
        rows ~1.3-1.9 s; paging through `find` sorted all the keys before each page again)."""
        query = self._sorted_ids(sql.order_columns(order), sql.where_clause(where)).limit(None)
        return list(query.to_arrow().column(rows.PRIMARY_KEY).to_pylist())

    def _sorted_ids(self, ordering: Sequence[tuple[str, bool]], clause: str | None) -> Any:
        """A query for the ids of the rows matching ``clause``, sorted by ``ordering`` (column, ascending).
        It reads only the sort columns and the ids: LanceDB keeps just the top rows of a sort, but of
        every column it reads, so sorting whole records read all of them (~0.8 s for the newest 50 of
        1M rows, against ~65 ms for the keys)."""
        columns = list(dict.fromkeys([rows.PRIMARY_KEY, *(column for column, _ in ordering)]))
        query = (
            self._assets.search()
            .select(columns)
            .order_by([ColumnOrdering(column_name=column, ascending=asc) for column, asc in ordering])
        )
        return query.where(clause) if clause else query

    def count(self, where: Filter) -> int:
        clause = sql.where_clause(where)
        return int(self._assets.count_rows(clause) if clause else self._assets.count_rows())

    def search(self, query: SearchQuery) -> list[Hit]:
        """Full-text, vector or hybrid search, filters applied before ranking (prefilter).

        - Text only: BM25 over label, prompt and tags (LanceDB's native full-text index, built on first
          use if missing). ``score`` is the BM25 score.
        - Vector only: nearest by the catalog's metric; rows without a vector never match. ``distance``
          is LanceDB's distance and ``score`` a similarity: ``1 - distance`` for cosine (the cosine
          similarity) and dot (the dot product), ``1 / (1 + distance)`` for l2 (squared distance).
        - Both: each search ranks up to ``max(2 * limit, 20)`` candidates and the lists are fused by
          reciprocal rank, ``score = sum(1 / (60 + rank))`` over the lists an asset appears in (rank
          from 1); ``distance`` is set when the asset was a vector candidate. Ties go to the better
          single rank, then to the id.
        """
        text = (query.text or "").strip()
        vector = self._query_vector(query.vector)
        if not text and vector is None:
            raise ValidationError("text", "give a text, a vector, or both to search")
        if query.limit <= 0:
            raise ValidationError("limit", f"must be > 0, got {query.limit}")
        clause = sql.where_clause(query.filter, sql.not_in_list(rows.PRIMARY_KEY, list(query.exclude_ids)))
        depth = max(2 * query.limit, 20) if text and vector is not None else query.limit
        ranked: list[tuple[str, float, float | None]] = []
        tables: list[pa.Table] = []
        usage: pa.Table | None = None  # the hits' usage rows, when the query read them too
        if text and vector is None:
            found = wait(self._text_search(text, clause, depth))
            tables.append(found)
            scores = found.column("_score").to_pylist()
            ranked = [
                (i, float(s), None)
                for i, s in zip(found.column(rows.PRIMARY_KEY).to_pylist(), scores, strict=True)
            ]
        elif vector is not None and not text:
            found, usage = self._vector_search(vector, query.filter, clause, depth)
            tables.append(found)
            distances = found.column("_distance").to_pylist()
            ranked = [
                (i, self._similarity(d), float(d))
                for i, d in zip(found.column(rows.PRIMARY_KEY).to_pylist(), distances, strict=True)
            ]
        else:
            assert vector is not None
            pending = self._text_search(text, clause, depth)  # runs while the vector search runs here
            try:
                by_vector, _ = self._vector_search(vector, query.filter, clause, depth)
            except BaseException:
                pending.cancel()
                raise
            by_text = wait(pending)
            tables += [by_text, by_vector]
            ranked = _fuse(
                by_text.column(rows.PRIMARY_KEY).to_pylist(),
                by_vector.column(rows.PRIMARY_KEY).to_pylist(),
                by_vector.column("_distance").to_pylist(),
            )[: query.limit]
        if not ranked:
            return []
        candidates = pa.concat_tables([t.select(list(rows.ASSET_COLUMNS)) for t in tables])
        # Build records (and read usage) only for the hits kept, not for every fused candidate.
        kept = pc.is_in(candidates.column(rows.PRIMARY_KEY), value_set=pa.array([i for i, _, _ in ranked]))
        assets = {a.id: a for a in self._to_assets(candidates.filter(kept), usage)}
        return [Hit(asset=assets[i], score=score, distance=distance) for i, score, distance in ranked]

    def _query_vector(self, vector: Sequence[float] | None) -> list[float] | None:
        if vector is None:
            return None
        values = [float(x) for x in vector]
        if len(values) != self.dimension:
            raise ValidationError(
                "vector",
                f"has {len(values)} dimensions; this catalog stores {self.dimension} (vectors.dimension)",
            )
        if not all(map(math.isfinite, values)):
            raise ValidationError("vector", "contains NaN or infinity")
        # The query runs in 32-bit floats, as the vectors are stored.
        rows.check_float32(pa.array([values], type=pa.list_(pa.float32())), "vector")
        return values

    def _similarity(self, distance: float) -> float:
        if self.metric == "l2":
            return 1.0 / (1.0 + float(distance))
        return 1.0 - float(distance)

    def _text_search(self, text: str, clause: str | None, limit: int) -> Future[pa.Table]:
        """BM25 matches through the async reads (measured at 1M rows: ~3.8 ms against ~5.7 ms through
        the synchronous API, ~5.3 against ~8 ms behind a filter), started and left running."""
        self._ensure_fts()
        return self._reads.text(
            text, column=rows.SEARCH_TEXT, where=clause, columns=rows.ASSET_COLUMNS, limit=limit
        )

    def _vector_search(
        self, vector: list[float], where: Filter, clause: str | None, limit: int
    ) -> tuple[pa.Table, pa.Table | None]:
        """The nearest rows (`rows.ASSET_COLUMNS` and ``_distance``), best first, by the plan `_plan`
        picks for the filter; and their usage rows if the plan read them on the way."""
        if _only_tenant(where, clause) and not self._other_tenants and self._has_vector_index():
            # A single-tenant store (the common case): rank without the filter (its prefilter mask
            # measured ~15 ms per query at 1M rows, and counting the rows it keeps another ~1 ms) and
            # check each hit's tenant here. If every hit is the tenant's, these are also the nearest of
            # the tenant's rows. One that is not sends this query, and this process's later ones, down
            # the planned path.
            found, usage = self._ann(vector, None, limit, self._nprobes())
            if all(tenant == where.tenant for tenant in rows.record_tenants(found)):
                return found, usage
            self._other_tenants = True
        plan, matching = self._plan(clause)
        nprobes = self._nprobes(kept=matching / max(self._ann_rows, matching, 1))
        if plan == "exact" and matching <= EXACT_NUMPY_MAX_ROWS and not self._narrowed_by_indexes(where):
            return self._exact(vector, clause, limit), None
        if plan == "exact":
            # LanceDB's flat search: over rows a scalar index picks out it beat reading their vectors
            # into numpy (1M rows, a project of 5,000: ~48 ms against ~97 ms); with the filter on an
            # unindexed column it read every vector (~0.6 s against ~0.11 s).
            query = self._assets.search(vector, query_type="vector", vector_column_name=rows.VECTOR)
            query = query.distance_type(self.metric).bypass_vector_index()
            if clause:
                query = query.where(clause, prefilter=True)
            return query.limit(limit).select([*rows.ASSET_COLUMNS, "_distance"]).to_arrow(), None
        return self._ann(vector, clause, limit, nprobes)

    def _narrowed_by_indexes(self, where: Filter) -> bool:
        """Whether the filter sets a condition besides the tenant, and scalar indexes serve all of them."""
        columns = sql.filter_columns(where) - {"tenant"}
        self._refresh_index_listing()
        return bool(columns) and columns <= self._indexed

    def _ann(
        self, vector: list[float], clause: str | None, limit: int, nprobes: int = ANN_NPROBES
    ) -> tuple[pa.Table, pa.Table]:
        """Nearest rows through the index, and their usage rows. The records come in the same query:
        fetching them by id in a second one measured ~2x slower."""
        return self._reads.nearest(
            vector,
            column=rows.VECTOR,
            metric=self.metric,
            nprobes=nprobes,
            refine_factor=ANN_REFINE_FACTOR,
            where=clause,
            columns=rows.ASSET_COLUMNS,
            limit=limit,
        )

    def _exact(self, vector: list[float], clause: str | None, limit: int) -> pa.Table:
        """Exact nearest neighbours among the (few) rows a filter keeps: their vectors are read in one
        scan and compared in numpy. Measured at 1M rows with a filter keeping 0.5% of them: ~0.16 s,
        against ~0.7 s for LanceDB's own flat search with the same prefilter."""
        import numpy as np

        # Rows without a vector are dropped here, not in the filter: "vector IS NOT NULL" in the query
        # made LanceDB read every row's vector (0.56 s at 1M rows, against 0.16 s this way). One async
        # query rather than a scan in batches: measured ~10% faster for a filter keeping 5,000 of 1M rows.
        table = self._reads.rows(ASSETS, clause, [rows.PRIMARY_KEY, rows.VECTOR])
        table = table.filter(pc.is_valid(table.column(rows.VECTOR)))
        ids = table.column(rows.PRIMARY_KEY).to_pylist()
        if not ids:
            empty = pa.table(
                {rows.PRIMARY_KEY: pa.array([], pa.string()), "_distance": pa.array([], pa.float32())}
            )
            return self._fetch_ranked(empty, None)
        matrix = table.column(rows.VECTOR).combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
        query = np.asarray(vector, dtype=np.float32)
        distances = _distances(matrix, query, self.metric)
        finite = np.flatnonzero(np.isfinite(distances))
        keep = min(limit, len(finite))
        if keep < len(finite):
            finite = finite[np.argpartition(distances[finite], keep - 1)[:keep]]
        order = sorted(finite.tolist(), key=lambda i: (float(distances[i]), ids[i]))
        ranked = pa.table(
            {
                rows.PRIMARY_KEY: pa.array([ids[i] for i in order], pa.string()),
                "_distance": pa.array([float(distances[i]) for i in order], pa.float32()),
            }
        )
        return self._fetch_ranked(ranked, None)

    def _fetch_ranked(self, ranked: pa.Table, clause: str | None) -> pa.Table:
        """The rows of ranked ids that (still) match the clause, in rank order, with their distance."""
        ids = ranked.column(rows.PRIMARY_KEY).to_pylist()
        distance = dict(zip(ids, ranked.column("_distance").to_pylist(), strict=True))
        if ids:
            table = self._rows_for_ids(ASSETS, ids, rows.ASSET_COLUMNS, clause)
        else:
            table = self._assets_schema.empty_table().select(list(rows.ASSET_COLUMNS))
        rank = {asset_id: i for i, asset_id in enumerate(ids)}
        found = table.column(rows.PRIMARY_KEY).to_pylist()
        table = table.take(pa.array(sorted(range(len(found)), key=lambda i: rank[found[i]]), pa.int64()))
        ordered = table.column(rows.PRIMARY_KEY).to_pylist()
        return table.append_column(
            pa.field("_distance", pa.float32()), pa.array([distance[i] for i in ordered], pa.float32())
        )

    def _plan(self, clause: str | None) -> tuple[str, int]:
        """``exact`` without an index or for a selective filter; ``ann`` (approximate, filter applied
        first) when the filter keeps enough rows for the index to keep its recall; ``ann-all`` when the
        filter keeps every row. Measured (docs/benchmarks.md): approximate search over a filter keeping
        0.5% of the rows loses recall, while exact search over those few rows is both exact and fast."""
        total = int(self._assets.count_rows())
        matching = int(self._assets.count_rows(clause)) if clause else total
        if not self._has_vector_index():
            return "exact", matching
        if matching == total:
            return "ann-all", matching
        if matching >= min(self.options.ann_min_rows, ANN_MIN_FRACTION * total):
            return "ann", matching
        return "exact", matching

    def _use_ann(self, clause: str | None) -> bool:
        """Whether a vector search with this filter goes through the approximate index."""
        return self._plan(clause)[0] != "exact"

    def digest_references(self, digests: Collection[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys([digests] if isinstance(digests, str) else digests))
        counts = dict.fromkeys(wanted, 0)
        if wanted:
            for item in pc.value_counts(self._lookup(self._assets, "digest", wanted)).to_pylist():
                counts[item["values"]] += item["counts"]
        return counts

    def lru_scan(self, *, tenant: str | None = None) -> tuple[StorageUsage, Iterator[LruRow]]:
        """`storage_usage` and `iter_lru` from one scan of ``assets`` (every row: reference counts span
        tenants and protected assets) and one of ``usage``; see `Catalog.lru_scan`.

        Both read the same snapshot. Digests are grouped and the LRU order made in numpy
        (`assetry_lancedb.lru`); rows are put in order a slice at a time, as the caller consumes them."""
        table = self._scan(self._assets, None, _LRU_COLUMNS)
        groups = lru.DigestGroups(table.column("digest"), table.column("size"))
        scope = None if tenant is None else _is(table.column("tenant"), tenant)
        evictable = _is(table.column("pinned"), False) & _is(table.column("status"), Status.AVAILABLE.value)
        if scope is not None:
            evictable &= scope
        last_used = lru.last_used_micros(table, self._scan(self._usage, None, ["id", "last_used"]))
        return groups.usage(scope), lru.lru_rows(table, np.flatnonzero(evictable), last_used, groups)

    def iter_lru(self, *, tenant: str | None = None) -> Iterator[LruRow]:
        """Evictable records, least recently used first; see `Catalog.iter_lru` and `lru_scan`."""
        yield from self.lru_scan(tenant=tenant)[1]

    def storage_usage(self, *, tenant: str | None = None) -> StorageUsage:
        """Byte counts; ``stored_bytes`` counts each digest once (`lru.DigestGroups`)."""
        table = self._scan(self._assets, sql.where_clause(Filter(tenant=tenant)), ["digest", "size"])
        return lru.DigestGroups(table.column("digest"), table.column("size")).usage()

    def counts_by_kind(self, *, tenant: str | None = None) -> dict[str, int]:
        table = self._scan(self._assets, sql.where_clause(Filter(tenant=tenant)), ["kind"])
        return {item["values"]: item["counts"] for item in pc.value_counts(table.column("kind")).to_pylist()}

    def iter_digests(self) -> Iterator[str]:
        table = self._scan(self._assets, "digest IS NOT NULL", ["digest"])
        yield from pc.unique(table.column("digest")).to_pylist()

    # -- maintenance ----------------------------------------------------------------------------------

    def compact(self) -> None:
        """Build missing indexes, merge small fragments and drop versions older than
        ``cleanup_older_than_seconds`` on every table (`table.optimize`), then build or rebuild the vector
        index when due (on the merged fragments: measured at 1M rows, an IVF_SQ index built before the
        merge gave recall@10 0.93-0.97 at 10 probes, one built after it 0.98-0.99)."""
        started = time.monotonic()
        self._ensure_scalar_indexes(filters=True)
        self._fts_ready = False
        self._ensure_fts()
        retention = timedelta(seconds=self.options.cleanup_older_than_seconds)
        for name, table in ((ASSETS, self._assets), (USAGE, self._usage), (META, self._meta)):
            self._retry(f"compact {name}", functools.partial(table.optimize, cleanup_older_than=retention))
            self._reads.written(name)  # new indexes and files
        self._maybe_build_ann()
        self._prewarm()
        self._vector_index_checked = -math.inf  # list the new indexes at the next search
        self._reads.written(ASSETS)
        log.info(
            "compacted catalog %s in %.2f s (%d records)",
            self._description,
            time.monotonic() - started,
            self._assets.count_rows(),
        )

    @staticmethod
    def _indexed_columns(table: Any) -> dict[str, str]:
        return {
            index.columns[0]: index.index_type for index in table.list_indices() if len(index.columns) == 1
        }

    def _ensure_scalar_indexes(self, *, filters: bool = False) -> None:
        """The indexes lookups and merges rely on; with ``filters``, also the filter indexes, once the
        catalog is large enough for them to pay (`FILTER_INDEX_MIN_ROWS`)."""
        for name, table in ((ASSETS, self._assets), (USAGE, self._usage)):
            wanted = _SCALAR_INDEXES[name]
            if name == ASSETS and filters and table.count_rows() >= FILTER_INDEX_MIN_ROWS:
                wanted += _FILTER_INDEXES
            indexed = self._indexed_columns(table)
            for column, config in wanted:
                if column not in indexed:
                    self._create_index(table, name, column, config())

    def _create_index(self, table: Any, name: str, column: str, config: Any) -> None:
        try:
            self._retry(
                f"index {name}.{column}", lambda: table.create_index(column, config=config, replace=False)
            )
        except Exception:
            # Another process may have built the same index first.
            if column not in self._indexed_columns(table):
                raise
        log.debug("built %s index on %s.%s", type(config).__name__, name, column)

    def _ensure_fts(self) -> None:
        if self._fts_ready:
            return
        if self._indexed_columns(self._assets).get(rows.SEARCH_TEXT) is None:
            self._create_index(self._assets, ASSETS, rows.SEARCH_TEXT, FTS())
            log.info("built the full-text index of %s", self._description)
        self._fts_ready = True

    def _has_vector_index(self) -> bool:
        self._refresh_index_listing()
        return self._vector_index

    def _refresh_index_listing(self) -> None:
        """The vector index (and its size) and the indexed columns, cached: listing indexes costs a
        millisecond per query. Listed again now and then, as another process may build (or rebuild, with
        more partitions) the vector index, or build the filter indexes."""
        now = time.monotonic()
        if now - self._vector_index_checked >= VECTOR_INDEX_RECHECK_SECONDS:
            indexes = self._assets.list_indices()
            self._indexed = {i.columns[0] for i in indexes if len(i.columns) == 1}
            index = next((i for i in indexes if list(i.columns) == [rows.VECTOR]), None)
            self._vector_index = index is not None
            self._ann_rows = int(getattr(index, "num_indexed_rows", 0) or 0)
            # The partitions the index has, which an older version of this rule (or another row count
            # than today's) may have chosen; indexes built before this was recorded have none.
            recorded = self._read_meta().get("ann_partitions", "0") if index is not None else "0"
            self._ann_partitions = int(recorded) if recorded.isdigit() else 0
            self._vector_index_checked = now

    def _nprobes(self, kept: float = 1.0) -> int:
        """Partitions probed by an approximate query whose filter keeps this share of the rows."""
        if self._ann_rows <= 0:  # LanceDB's listing gave no size for the index: nothing to scale by
            return ANN_NPROBES
        partitions = self._ann_partitions or ann_partitions(self._ann_rows)
        kept_per_partition = self._ann_rows / partitions * kept
        needed = math.ceil(ANN_MIN_CANDIDATES / kept_per_partition) if kept_per_partition > 0 else partitions
        return min(partitions, max(ANN_NPROBES, math.ceil(ANN_PROBE_FRACTION * partitions), needed))

    def _prewarm(self) -> None:
        """Load the vector and full-text indexes into the cache the reads share (`prewarm_indexes`)."""
        if not self.options.prewarm_indexes:
            return
        for index in self._assets.list_indices():
            if list(index.columns) in ([rows.VECTOR], [rows.SEARCH_TEXT]):
                self._assets.prewarm_index(index.name)

    def _maybe_build_ann(self) -> None:
        """Build (or rebuild after 2x growth: optimize adds rows to an index but never re-clusters it)
        the IVF_SQ index once ``ann_min_rows`` records have vectors.

        IVF_SQ (8-bit scalar quantisation), measured on 384-d vectors: recall@10 above 0.95 without a
        refine step and a build in seconds, where IVF_PQ with dim/4 sub-vectors needed refine_factor 10
        for the same recall and took minutes to build (190 s for 100k rows on 2 cores)."""
        with_vectors = int(self._assets.count_rows(f"{rows.VECTOR} IS NOT NULL"))
        if with_vectors < self.options.ann_min_rows:
            return
        built_for = int(self._read_meta().get("ann_rows", "0"))
        if rows.VECTOR in self._indexed_columns(self._assets):  # uncached: another process may have built it
            if built_for == 0:
                # Built by a process that did not record its size: start counting growth from here.
                self._write_meta({"ann_rows": str(with_vectors)}, overwrite=True)
                return
            if with_vectors < 2 * built_for:
                return
        started = time.monotonic()
        partitions = ann_partitions(with_vectors)
        config = IvfSq(distance_type=self.metric, num_partitions=partitions)  # type: ignore[arg-type]
        self._retry("build the vector index", lambda: self._assets.create_index(rows.VECTOR, config=config))
        self._write_meta({"ann_rows": str(with_vectors), "ann_partitions": str(partitions)}, overwrite=True)
        self._vector_index = True
        self._ann_rows = with_vectors
        self._ann_partitions = partitions
        self._vector_index_checked = time.monotonic()
        log.info(
            "built the IVF_SQ vector index of %s over %d vectors in %.1f s",
            self._description,
            with_vectors,
            time.monotonic() - started,
        )

    def describe(self) -> str:
        return self._description

    def close(self) -> None:
        self._reads.close()

    def __repr__(self) -> str:
        return f"<LanceCatalog {self._description} dimension={self.dimension} metric={self.metric}>"


# -- helpers ------------------------------------------------------------------------------------------------


def _both(clause: str, extra: str | None) -> str:
    """``clause``, and ``extra`` if given (`sql.conjunction` for a clause known to exist)."""
    return sql.conjunction(clause, extra) or clause


def _only_tenant(where: Filter, clause: str | None) -> bool:
    """Whether the filter is nothing but a tenant (so a hit can be checked against it in Python)."""
    return where.tenant is not None and clause == sql.where_clause(Filter(tenant=where.tenant))


def _distances(matrix: Any, query: Any, metric: str) -> Any:
    """LanceDB's distances of every row to the query, in numpy: cosine ``1 - cos``, l2 the squared
    euclidean distance, dot ``1 - a.b``. Rows whose cosine is undefined (zero vectors) come out NaN."""
    import numpy as np

    if metric == "l2":
        diff = matrix - query
        return np.einsum("ij,ij->i", diff, diff)
    dots = matrix @ query
    if metric == "dot":
        return 1.0 - dots
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - dots / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))


def _is(column: pa.ChunkedArray, value: object) -> Any:
    """A numpy row mask: the column equals the value (nulls never do)."""
    return pc.fill_null(pc.equal(column, value), False).to_numpy(zero_copy_only=False)


def ann_partitions(rows_with_vectors: int) -> int:
    """IVF partitions for an index over this many vectors (see `ANN_MAX_PARTITIONS`)."""
    partitions = max(1, round(math.sqrt(rows_with_vectors)))
    if partitions <= ANN_FLAT_KMEANS_PARTITIONS:
        return partitions
    if partitions < 2 * ANN_FLAT_KMEANS_PARTITIONS:
        return ANN_FLAT_KMEANS_PARTITIONS
    return min(partitions, ANN_MAX_PARTITIONS)


def _options(options: object) -> LanceOptions:
    if options is None:
        return LanceOptions()
    if not isinstance(options, LanceOptions):
        raise ConfigError("catalog.options", f"expected LanceOptions, got {type(options).__name__}")
    return options


def _dimension(dimension: object) -> int:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0:
        raise ConfigError("vectors.dimension", f"must be a positive integer, got {dimension!r}")
    return dimension


def _metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError("vectors.metric", f"unknown metric {metric!r}; choose one of {list(METRICS)}")
    return metric


def _location(url: str) -> tuple[str, str]:
    """(URI for lancedb.connect, description without credentials or the full local path)."""
    if not url or not url.strip():
        raise ConfigError("catalog.url", "must not be empty")
    parts = urlsplit(url)
    # One-letter schemes are Windows drive letters.
    if len(parts.scheme) > 1 and parts.scheme != "file":
        name = PurePosixPath(parts.path.rstrip("/")).name or (parts.hostname or "")
        return url, f"lancedb:{parts.scheme}…/{name}"
    path = Path(parts.path if parts.scheme == "file" else url).expanduser()
    return str(path), f"lancedb:local…/{path.name}"


def _brief(text: str, limit: int = 300) -> str:
    """The gist of a LanceDB error, whose text is often a long Rust debug dump: the S3 error code and
    message, or the operating system's reason, or else the first line, shortened."""
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if code:
        message = re.search(r"<Message>([^<]+)</Message>", text)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    os_error = re.search(r'kind: (\w+), message: "([^"]+)"', text)
    if os_error:
        return f"{os_error.group(2)} ({os_error.group(1)})"
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.sub(r",? /\S+\.rs:\d+:\d+", "", first)  # where in LanceDB's Rust source, no use to a user
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _has_primary_key(schema: pa.Schema, key: str) -> bool:
    metadata = schema.field(key).metadata or {}
    return _PRIMARY_KEY_METADATA in metadata


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size``; an empty sequence gives one empty slice."""
    if not items:
        yield items
        return
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValidationError(field, f"expected a date/time, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fuse(
    text_ids: Sequence[str], vector_ids: Sequence[str], distances: Sequence[float]
) -> list[tuple[str, float, float | None]]:
    """Reciprocal rank fusion of two ranked id lists: (id, score, distance), best first."""
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    distance: dict[str, float] = {}
    for ranking in (text_ids, vector_ids):
        for rank, asset_id in enumerate(ranking, start=1):
            scores[asset_id] = scores.get(asset_id, 0.0) + 1.0 / (RRF_K + rank)
            best_rank[asset_id] = min(best_rank.get(asset_id, rank), rank)
    for asset_id, d in zip(vector_ids, distances, strict=True):
        distance[asset_id] = float(d)
    order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))
    return [(i, scores[i], distance.get(i)) for i in order]
