"""The two backend contracts, `BlobStore` and `Catalog`, and the registration objects plugins return from
`assetry_storage_backends` / `assetry_catalog_backends`.

Core never implements these; plugins do (`assetry-fsspec`, `assetry-lancedb`). `assetry.testing` holds the
contract tests every implementation must pass.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any, BinaryIO

import attrs

from assetry.content import Content
from assetry.errors import NotSupported, ValidationError
from assetry.model import (
    Asset,
    Cursor,
    Filter,
    Hit,
    LruRow,
    SearchQuery,
    StorageUsage,
    StoredBlob,
    UsageEvent,
)

ORDERED_IDS_PAGE = 1_000
"""Records per `find` page in the default `Catalog.ordered_ids`."""


class BlobStore(abc.ABC):
    """Content-addressed blob storage. A blob is named by its digest and written at most once.

    Implementations must publish atomically (a reader never sees a partial blob) and hash with bounded
    memory whatever the size.
    """

    algorithm: str
    """Digest algorithm used for new blobs (``blake3``, ``sha256``)."""

    @property
    def put_workers(self) -> int:
        """How many `put` calls may run at once (`Store.add_many` makes them in the calling thread and
        ``put_workers - 1`` helper threads). 1 unless the backend's puts are thread-safe and spend their
        time outside the GIL (I/O, hashing)."""
        return 1

    @abc.abstractmethod
    def put(self, content: Content) -> StoredBlob:
        """Store content under its digest, unless a blob with that digest exists (then write nothing)."""

    def lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        """A lock over the whole store, across processes, if the backend can hold one.

        Ingest holds it shared from its first put to its catalog commit; deletion (`Store.delete`,
        `Store.gc`, a failed ingest removing what it wrote) holds it exclusive from removing records to
        deleting the blobs they no longer reference. So a blob that an ingest found already stored is
        not deleted before the ingest's record references it. This default holds nothing: a backend
        without locks keeps that window open (see Known limitations in the architecture page)."""
        return contextlib.nullcontext()

    def put_many(self, contents: Sequence[Content]) -> list[StoredBlob]:
        """Store several contents. Backends override this to batch or parallelise uploads."""
        return [self.put(content) for content in contents]

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether the blob is stored, completely. Ingest trusts it to skip reading a file the digest
        cache knows (called from the put threads), so it must never answer True for a partial blob."""

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary reader over the blob; raises `BlobNotFound`."""

    def read_range(self, digest: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (fewer at the end of the blob, none past it);
        raises `BlobNotFound`. Backends that can fetch a byte range in one request override this; the
        default opens the blob, seeks and reads."""
        check_range(start, length)
        with self.open(digest) as reader:
            if reader.seekable():
                reader.seek(start)
            else:
                _skip(reader, start)
            parts: list[bytes] = []
            remaining = length
            # A raw stream may return fewer bytes than asked before its end.
            while remaining > 0 and (part := reader.read(remaining)):
                parts.append(part)
                remaining -= len(part)
            return b"".join(parts)

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """Size in bytes; raises `BlobNotFound`."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove the blob; a missing blob is not an error (deletes are retried after crashes)."""

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Every stored (digest, size), in no particular order, for fsck and orphan sweeps."""

    def local_path(self, digest: str) -> str | None:
        """A local file path holding the blob, when the backend is on local disk; else None."""
        return None

    def signed_url(self, digest: str, expires: timedelta) -> str:
        """A time-limited URL that serves the blob to a plain HTTP GET."""
        raise NotSupported(f"the {self.describe()} storage cannot sign download URLs")

    @abc.abstractmethod
    def describe(self) -> str:
        """A short description for logs and `assetry stats`, without credentials or full local paths."""

    def close(self) -> None:  # noqa: B027 - optional hook for backends holding resources
        """Release resources."""


def check_range(start: int, length: int) -> None:
    """Reject a negative offset or length (`ValidationError` naming ``start`` or ``length``)."""
    for name, value in (("start", start), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(name, f"must be an integer >= 0, got {value!r}")


def _skip(reader: BinaryIO, count: int) -> None:
    while count > 0 and (part := reader.read(min(count, 1024 * 1024))):
        count -= len(part)


class Catalog(abc.ABC):
    """The catalog of asset records, their usage counters, and their text and vector indexes.

    Every write method takes a batch and must commit it as O(1) writes, never one per asset. Reads scoped
    by ``Filter.tenant`` must never return another tenant's rows.
    """

    @abc.abstractmethod
    def insert(self, assets: Sequence[Asset]) -> None:
        """Add new records in one commit. Ids already present are an error (`ValidationError` on ``id``)
        and nothing of the batch is written."""

    @abc.abstractmethod
    def upsert(self, assets: Sequence[Asset]) -> None:
        """Insert or replace records by id, idempotently (seeding built-ins twice leaves the same rows)."""

    @abc.abstractmethod
    def update(self, assets: Sequence[Asset]) -> None:
        """Replace the metadata of existing records (usage counters are not touched)."""

    @abc.abstractmethod
    def delete(self, ids: Collection[str]) -> None:
        """Remove records and their usage counters; unknown ids are ignored."""

    @abc.abstractmethod
    def get_many(self, ids: Collection[str], *, tenant: str | None = None) -> dict[str, Asset]:
        """Records by id (missing ids are absent from the result), usage counters folded in."""

    @abc.abstractmethod
    def ids_with_prefix(self, prefix: str, *, tenant: str | None = None, limit: int = 10) -> list[str]: ...

    @abc.abstractmethod
    def find(self, where: Filter, *, order: str, limit: int, offset: int) -> list[Asset]:
        """Records matching the filter in a stable order (see `assetry.model.ORDERS`)."""

    @abc.abstractmethod
    def count(self, where: Filter) -> int: ...

    def find_after(self, where: Filter, *, order: str, limit: int, after: Cursor) -> list[Asset]:
        """The page of `find` that follows ``after`` (see `Cursor`): records strictly after
        ``(after.key, after.id)`` in the order. This default pages by ``after.offset``; a backend that
        can filter on the keys overrides it, as an offset sorts every earlier key again (and shifts when
        records are added or deleted before it)."""
        return self.find(where, order=order, limit=limit, offset=after.offset)

    def ordered_ids(self, where: Filter, *, order: str) -> list[str]:
        """The ids of every record matching the filter, in the order `find` gives (what `Store.iter`
        walks). This default pages through `find`; a backend that can sort just the keys overrides it,
        as paging by offset sorts everything before each page again."""
        ids: list[str] = []
        while True:
            page = self.find(where, order=order, limit=ORDERED_IDS_PAGE, offset=len(ids))
            ids += [asset.id for asset in page]
            if len(page) < ORDERED_IDS_PAGE:
                return ids

    @abc.abstractmethod
    def search(self, query: SearchQuery) -> list[Hit]:
        """Full-text, vector or hybrid search; see `SearchQuery`. Rows without a vector never match a
        vector query."""

    @abc.abstractmethod
    def record_usage(self, events: Sequence[UsageEvent]) -> None:
        """Fold a batch of access events into last_used and access counts, in O(1) writes."""

    @abc.abstractmethod
    def digest_references(self, digests: Collection[str]) -> dict[str, int]:
        """How many records reference each digest (digests with no record map to 0). Derived from the
        records themselves, never from a separate counter."""

    @abc.abstractmethod
    def iter_lru(self, *, tenant: str | None = None) -> Iterator[LruRow]:
        """Evictable records (not pinned, status available), least recently used first (never-used ones
        by creation time), ties broken by id. Each row carries its digest's reference count over the
        whole catalog, so quota GC needs no query per victim."""

    @abc.abstractmethod
    def storage_usage(self, *, tenant: str | None = None) -> StorageUsage: ...

    def lru_scan(self, *, tenant: str | None = None) -> tuple[StorageUsage, Iterator[LruRow]]:
        """`storage_usage` and `iter_lru` together, as quota GC needs both. This default calls the two;
        a backend that reads the same rows for both overrides it to read them once (and from one
        snapshot)."""
        return self.storage_usage(tenant=tenant), self.iter_lru(tenant=tenant)

    @abc.abstractmethod
    def counts_by_kind(self, *, tenant: str | None = None) -> dict[str, int]: ...

    @abc.abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every digest referenced by any record, each once (for fsck and orphan sweeps)."""

    def compact(self) -> None:  # noqa: B027 - optional for backends with nothing to compact
        """Merge small writes and drop old versions; safe while other processes read."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short description for logs and `assetry stats`, without credentials or full local paths."""

    def close(self) -> None:  # noqa: B027
        """Release resources."""


@attrs.frozen
class StorageBackend:
    """What a storage plugin registers: a name (``[storage] backend``) and a factory.

    ``options_type`` is an attrs class for the ``[storage.options]`` table; core validates the table
    against it (unknown keys, wrong types) and passes the instance to the factory.
    """

    name: str
    factory: Callable[[StorageSpec], BlobStore]
    options_type: type[Any] | None = None
    description: str = ""
    preload: tuple[str, ...] = ()
    """Modules the factory imports when it runs (imported late, to keep start-up short): the command
    daemon imports them ahead of every command."""


@attrs.frozen
class CatalogBackend:
    """What a catalog plugin registers: a name (``[catalog] backend``) and a factory."""

    name: str
    factory: Callable[[CatalogSpec], Catalog]
    options_type: type[Any] | None = None
    description: str = ""
    preload: tuple[str, ...] = ()
    """Modules the factory imports when it runs; see `StorageBackend.preload`."""


@attrs.frozen
class StorageSpec:
    """Everything a storage factory needs. ``options`` is an ``options_type`` instance (or None)."""

    url: str
    digest: str
    options: Any = None


@attrs.frozen
class CatalogSpec:
    """Everything a catalog factory needs. ``dimension`` is the vector length (``[vectors] dimension``);
    ``metric`` the distance (``cosine``, ``l2``, ``dot``). ``create`` False: open an existing catalog
    only, and raise `StoreNotFound` (creating nothing, not even a directory) where there is none."""

    url: str
    dimension: int
    metric: str
    options: Any = None
    create: bool = True
