"""The Python API: `assetry.open()` returns a `Store`, which runs the lifecycle through the hooks.

    ingest   validate -> enrich (assetry_ingest) -> store blobs -> one catalog commit -> assetry_index
    access   catalog lookup -> storage open -> assetry_access (usage buffered, folded in batches)
    evict    policy picks victims -> assetry_evict (veto/act) -> rows removed -> unreferenced blobs deleted

Blobs are written before rows and rows removed before blobs, so a crash can leave an orphan blob (not swept
yet, docs/architecture.md) but never a row whose content is missing.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import os
import queue
import secrets
import threading
import time
import typing
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal

import attrs

from assetry import _convert, digest_cache
from assetry.backends import BlobStore, Catalog, CatalogSpec, StorageSpec
from assetry.config import Config, is_url, load_config, parse_size
from assetry.content import Content, Source, check_path
from assetry.digests import digest_stream
from assetry.errors import (
    AmbiguousId,
    AssetNotFound,
    AssetryError,
    BackendError,
    BlobNotFound,
    ConfigError,
    PluginError,
    SourceError,
    StoreClosed,
    StoreNotFound,
    ValidationError,
)
from assetry.locks import flock
from assetry.model import (
    LINK_FIELDS,
    ORDERS,
    PROVENANCE_FIELDS,
    UPDATABLE_FIELDS,
    Asset,
    AssetDraft,
    Cursor,
    Eviction,
    Filter,
    GcReport,
    Hit,
    Kind,
    Links,
    LruRow,
    Page,
    Provenance,
    SearchQuery,
    Status,
    StoredBlob,
    StoreStats,
    UsageEvent,
    check_float32_range,
    check_label,
    check_name,
    filter_digest,
    utcnow,
)
from assetry.plugins import (
    PluginManager,
    catalog_backends,
    config_claims,
    get_plugin_manager,
    implementers,
    pick_backend,
    storage_backends,
)
from assetry.redact import redact_url

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 5000
"""Assets per catalog commit in `add_many`: one LanceDB version per batch, not per file."""

ITER_CHUNK = 1_000
"""Records read per catalog call by `Store.iter`."""

REHASH_ON_INTERRUPT = 64 * 1024 * 1024
"""Largest content hashed again after a Ctrl-C interrupted its put, to find a blob it may have left
(`Store._maybe_stored`): ~0.05 s from the page cache."""

OnDuplicate = Literal["skip", "keep"]


def open(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    tenant: str | None = None,
    register: Iterable[object] = (),
    load_entrypoints: bool = True,
    create: bool = True,
    **overrides: Any,
) -> Store:
    """Open (or create) a store.

    :param config: a `Config`, or the path of an ``assetry.toml``; by default the file is discovered
        (``$ASSETRY_CONFIG``, then the working directory and its parents), and defaults apply without one.
    :param root: where the store lives (directory or URL); overrides ``[store] root``.
    :param tenant: the tenant new assets belong to and every query is scoped to.
    :param register: plugin objects to register besides the installed ones (applications, tests).
    :param load_entrypoints: False to load no installed plugins (hermetic tests pass them in ``register``).
    :param create: False to open an existing store only: `StoreNotFound` where there is none (a mistyped
        root, say), and nothing is created there.
    :param overrides: configuration tables, e.g. ``vectors={"dimension": 384}``, ``plugins={"block": [...]}``.
    """
    if isinstance(config, Config):
        cfg = config
        if overrides or root:
            raise ConfigError(None, "pass overrides either in the Config or as arguments, not both")
    else:
        if root is not None:
            overrides.setdefault("store", {})["root"] = os.fspath(root)
        cfg = load_config(config, overrides=overrides)
    return Store.from_config(
        cfg, tenant=tenant, register=register, load_entrypoints=load_entrypoints, create=create
    )


@attrs.frozen
class IngestReport:
    """What `Store.add_many` did. ``assets`` are in input order; ``duplicates`` were already in the
    catalog (same tenant, digest, label and project) and were returned instead of added again.
    ``files_unread`` were known by the digest cache (`assetry.digest_cache`) and not read at all."""

    assets: list[Asset]
    added: int
    duplicates: int
    blobs_written: int
    bytes_written: int
    files_unread: int = 0

    def _plus(self, other: IngestReport) -> IngestReport:
        """This report followed by another (batches of one ingest)."""
        return IngestReport(
            self.assets + other.assets,
            self.added + other.added,
            self.duplicates + other.duplicates,
            self.blobs_written + other.blobs_written,
            self.bytes_written + other.bytes_written,
            self.files_unread + other.files_unread,
        )


@attrs.frozen
class DeleteReport:
    deleted: list[str]
    spared: list[str]
    blobs_deleted: int
    bytes_freed: int


class UsageRecorder:
    """The built-in `assetry_access` plugin: buffers access events in memory and folds them into the catalog
    in one write per batch (per-access table rewrites are what made LanceDB unusable in DESIGN.md)."""

    def __init__(self, catalog: Catalog, flush_events: int, flush_seconds: float) -> None:
        self._catalog = catalog
        self._flush_events = flush_events
        self._flush_seconds = flush_seconds
        self._events: list[UsageEvent] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        # Folds one at a time: each reads the counters, adds and writes them back, so two threads of one
        # process folding the same ids at once would each write over the other's counts.
        self._folding = threading.Lock()

    def assetry_access(self, asset: Asset, action: str, actor: str | None) -> None:
        with self._lock:
            if not self._events:
                self._oldest = time.monotonic()
            self._events.append(UsageEvent(asset.id, action, utcnow(), actor))
            due = (
                len(self._events) >= self._flush_events
                or time.monotonic() - self._oldest >= self._flush_seconds
            )
        if due:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._events)

    def flush(self) -> None:
        with self._folding:
            with self._lock:
                events, self._events = self._events, []
            if events:
                self._catalog.record_usage(events)
                log.debug("folded %d usage events", len(events))


def _hookimpl_methods(obj: object, names: Iterable[str]) -> object:
    """Mark methods of an internal object as hook implementations without decorating the class, so the
    recorder stays a plain class that can be unit tested on its own."""
    from assetry import hookimpl

    for name in names:
        hookimpl(getattr(type(obj), name))
    return obj


class Store:
    """A store: blob storage + catalog + plugins, scoped to one tenant. Use it as a context manager, or
    call `close` so buffered usage is written."""

    def __init__(
        self,
        config: Config,
        pm: PluginManager,
        blobs: BlobStore,
        catalog: Catalog,
        *,
        tenant: str,
    ) -> None:
        self.config = config
        self.plugins = pm
        self.blobs = blobs
        self.catalog = catalog
        self.tenant = tenant
        self._usage: UsageRecorder | None = None
        if config.usage.enabled:
            self._usage = UsageRecorder(catalog, config.usage.flush_events, config.usage.flush_seconds)
            pm.register(_hookimpl_methods(self._usage, ["assetry_access"]), name="assetry.usage")
        cache_path = config.digest_cache_path if digest_cache.SUPPORTED else None
        self._digests = digest_cache.DigestCache(cache_path) if cache_path else None
        self._closed = False
        # Flush buffered usage even if the caller forgets to close (at garbage collection or exit).
        self._finalizer = weakref.finalize(self, _close_backends, self._usage, catalog, blobs, self._digests)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        tenant: str | None = None,
        register: Iterable[object] = (),
        load_entrypoints: bool = True,
        create: bool = True,
    ) -> Store:
        if tenant is not None:  # (an empty one too: it must not fall back to the configured tenant)
            check_name(tenant, "tenant")
        pm = get_plugin_manager(
            block=config.plugins.block, load_entrypoints=load_entrypoints, plugins=register
        )
        config = config.claim_sections(config_claims(pm))
        storage = pick_backend(pm, storage_backends(pm), config.storage.backend, "storage.backend")
        cat = pick_backend(pm, catalog_backends(pm), config.catalog.backend, "catalog.backend")
        storage_options = _backend_options(
            storage.options_type, config.storage.options, "storage.options", config
        )
        catalog_options = _backend_options(
            cat.options_type, config.catalog.options, "catalog.options", config
        )
        blobs = storage.factory(StorageSpec(config.storage_url, config.storage.digest, storage_options))
        try:
            catalog = cat.factory(
                CatalogSpec(
                    config.catalog_url,
                    config.vectors.dimension,
                    config.vectors.metric,
                    catalog_options,
                    create=create,
                )
            )
        except StoreNotFound as missing:
            blobs.close()
            where = redact_url(config.root)
            raise StoreNotFound(
                f"no store at {where} ({missing}); `assetry init` or `assetry add` creates one"
            ) from None
        except BaseException:
            blobs.close()
            raise
        store = cls(config, pm, blobs, catalog, tenant=config.store.tenant if tenant is None else tenant)
        log.info("opened store: storage %s, catalog %s", blobs.describe(), catalog.describe())
        return store

    # -- lifecycle ------------------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()
            # Every later call fails clearly: reads used to fail inside LanceDB ("Event loop is closed")
            # while writes still committed through the closed store.
            self.catalog = typing.cast(Catalog, _Closed())
            self.blobs = typing.cast(BlobStore, _Closed())

    def flush(self) -> None:
        """Write buffered usage now."""
        if self._usage is not None:
            self._usage.flush()

    def compact(self) -> None:
        """Merge small catalog writes and drop old versions (safe while others read)."""
        self.flush()
        self.catalog.compact()

    # -- ingest ---------------------------------------------------------------------------------------

    def add(
        self,
        source: Source,
        /,
        *,
        on_duplicate: OnDuplicate = "skip",
        allow_empty: bool = False,
        **fields: Any,
    ) -> Asset:
        """Store one piece of content and catalog it.

        :param source: a path, bytes, or a binary file object.
        :param on_duplicate: ``"skip"`` returns the existing asset when this tenant already has one with
            the same content, label and project; ``"keep"`` always adds a new asset (sharing the blob).
        :param allow_empty: store empty content (rejected by default: it is usually a failed generation).
        :param fields: asset fields (`AssetDraft`), flat: ``label``, ``kind``, ``tags``, ``prompt``,
            ``seed``, ``model``, ``agent_id``, ``extra``, ``embedding``, ...
        """
        if isinstance(source, (str, os.PathLike)):
            check_path(source)
            if Path(source).is_dir():
                raise SourceError(Path(source).name, "is a directory; use add_many (or `assetry add DIR`)")
        report = self.add_many([(source, fields)], on_duplicate=on_duplicate, allow_empty=allow_empty)
        return report.assets[0]

    def add_many(
        self,
        items: Source | Iterable[Source | tuple[Source, Mapping[str, Any]]],
        *,
        recursive: bool = True,
        on_duplicate: OnDuplicate = "skip",
        allow_empty: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
        **common: Any,
    ) -> IngestReport:
        """Store many files (directories are expanded) with one catalog commit per ``batch_size`` assets.

        Every source and every draft is validated before anything is written: one bad file or field
        raises an error naming it, and nothing is stored. (With more than ``batch_size`` items, batches
        committed before a failing one stay committed.)

        :param items: paths (files or directories), bytes, file objects, or ``(source, fields)`` pairs;
            or one path, bytes or file object.
        :param common: fields applied to every item (per-item fields win; tags are merged).
        :param progress: called with the number of files just stored, for progress bars.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValidationError("batch_size", f"expected an integer > 0, got {batch_size!r:.60}")
        if isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(items, "read"):
            # One source (a directory, say), not the characters of its name or the lines of a file.
            items = [typing.cast(Source, items)]
        elif not isinstance(items, Iterable):
            got = type(items).__name__
            raise ValidationError("items", f"expected sources (paths, bytes or files), got {got}")
        if on_duplicate not in ("skip", "keep"):
            raise ValidationError("on_duplicate", f"must be 'skip' or 'keep', got {on_duplicate!r}")
        self.make_draft(common)  # validate the shared fields once, before looking at any file
        started = self._digests.started() if self._digests else 0  # before any file is looked at
        planned = list(self._plan(items, common, recursive))
        drafts, taken = self._prepare(planned, allow_empty=allow_empty, on_duplicate=on_duplicate)
        report = IngestReport([], 0, 0, 0, 0)
        try:
            for start in range(0, len(drafts), batch_size):
                batch = self._commit_batch(
                    drafts[start : start + batch_size], on_duplicate, taken, progress, started
                )
                report = report._plus(batch)
        finally:
            for content, _ in drafts:
                content.close()
        log.info(
            "ingested %d assets (%d new, %d already present), %d blobs written (%d bytes), %d files unread",
            len(report.assets),
            report.added,
            report.duplicates,
            report.blobs_written,
            report.bytes_written,
            report.files_unread,
        )
        return report

    def make_draft(self, fields: Mapping[str, Any]) -> AssetDraft:
        """Validate flat keyword fields into an `AssetDraft`; errors name the field as the caller wrote it."""
        data: dict[str, Any] = {}
        provenance: dict[str, Any] = {}
        links: dict[str, Any] = {}
        for key, value in fields.items():
            if key in PROVENANCE_FIELDS:
                provenance[key] = value
            elif key in LINK_FIELDS:
                links[key] = value
            elif key == "meta":
                data["extra"] = value
            else:
                data[key] = value
        if provenance:
            data["provenance"] = provenance
        if links:
            data["links"] = links
        if data.setdefault("tenant", self.tenant) != self.tenant:
            raise ValidationError(
                "tenant", "assets belong to the store's tenant; open the store for the other one"
            )
        try:
            return _convert.structure(data, AssetDraft)
        except ValidationError as exc:
            raise ValidationError(_flat_field(exc.field), exc.reason) from None

    def _plan(
        self,
        items: Iterable[Source | tuple[Source, Mapping[str, Any]]],
        common: Mapping[str, Any],
        recursive: bool,
    ) -> Iterator[tuple[Content, dict[str, Any]]]:
        own: frozenset[tuple[int, int]] | None = None  # the store's directories, once one is walked
        for item in items:
            source, fields = item if isinstance(item, tuple) else (item, {})
            merged = {**common, **fields}
            if "tags" in common and "tags" in fields:
                merged["tags"] = _union(_as_list(common["tags"]), _as_list(fields["tags"]))
            if isinstance(source, (str, os.PathLike)):
                check_path(source)
                if Path(source).is_dir():
                    own = own_directories(self.config) if own is None else own
                    for path in iter_files(Path(source), recursive, own):
                        yield Content.from_path(path), merged
                    continue
            yield Content.of(source), merged

    def _prepare(
        self, planned: list[tuple[Content, dict[str, Any]]], *, allow_empty: bool, on_duplicate: OnDuplicate
    ) -> tuple[list[tuple[Content, AssetDraft]], dict[str, Asset]]:
        """Validate every item before any write. Also returns the records that already hold ids the
        caller chose (with ``skip``, re-adding the same content under the same id is a no-op).

        Enrichment (`assetry_ingest`) runs later, in `_commit_batch`, and only for content that is not
        already cataloged: profiled, sniffing and parsing duplicates was most of a re-ingest, and an
        embedding plugin would make it far worse."""
        prepared = []
        # Files added together mostly carry the same fields: validate each distinct set once (profiled:
        # structuring the same draft 2,000 times was a tenth of a bulk ingest).
        drafts: dict[object, AssetDraft] = {}
        try:
            for index, (content, fields) in enumerate(planned):
                if content.size == 0 and not allow_empty:
                    reason = "is empty (0 bytes); pass allow_empty (--allow-empty) to store it"
                    raise SourceError(content.name or "source", reason)
                key = _freeze(fields)
                draft = drafts.get(key) if key is not None else None
                try:
                    if draft is None:
                        draft = self.make_draft(fields)
                        if key is not None:
                            drafts[key] = draft
                    self._check_embedding(draft)
                except ValidationError as exc:
                    if len(planned) == 1 or type(exc) is not ValidationError:
                        raise
                    # Which of many items: the field alone ("embedding") does not say.
                    name = fields.get("label") or content.name or "unnamed"
                    where = f"(in {name!r:.80}, item {index + 1} of {len(planned)})"
                    raise ValidationError(exc.field, f"{exc.reason} {where}") from None
                prepared.append((content, draft))
        except BaseException:
            for content, _ in planned:
                content.close()
            raise
        ids = [d.id for _, d in prepared if d.id is not None]
        if len(ids) != len(set(ids)):
            raise ValidationError("id", "the same id is given twice in one batch")
        taken = self.catalog.get_many(ids) if ids else {}
        if taken and on_duplicate == "keep":
            raise ValidationError("id", f"{sorted(taken)[0]!r} already exists")
        return prepared, taken

    def _check_embedding(self, draft: AssetDraft) -> None:
        if draft.embedding is not None and len(draft.embedding) != self.config.vectors.dimension:
            raise ValidationError(
                "embedding",
                f"has {len(draft.embedding)} dimensions; the store is configured for "
                f"{self.config.vectors.dimension} ([vectors] dimension)",
            )
        if draft.embedding is not None:
            self._check_direction(draft.embedding, "embedding")

    def _check_direction(self, values: Sequence[float], field: str) -> None:
        """A zero vector has no direction: by cosine it is no distance from anything, and an asset holding
        one would never be found (nor would a query for one find anything)."""
        if self.config.vectors.metric == "cosine" and not any(values):
            raise ValidationError(
                field, "is all zeros, which cosine similarity cannot compare ([vectors] metric)"
            )

    def _enrich(self, draft: AssetDraft, content: Content) -> AssetDraft:
        """Merge what `assetry_ingest` plugins return into the draft: the caller's values win, tags are
        united, ``extra`` and ``parameters`` merged key by key. Each merged value is structured with its
        field's type (strict, as the caller's were) and set with `attrs.evolve` (validators run)."""
        try:
            results = self.plugins.hook.assetry_ingest(draft=draft, content=content, config=self.config)
        finally:
            content.forget_head()  # plugins have read what they need; the batch lives on until commit
        if not any(results):
            return draft
        changes: dict[str, dict[str, Any]] = {"": {}, "provenance": {}, "links": {}}
        for updates in results:
            if not isinstance(updates, Mapping):
                raise PluginError(
                    f"assetry_ingest must return a mapping of fields or None, and one returned "
                    f"{updates!r:.80} (implemented by {implementers(self.plugins.hook.assetry_ingest)})"
                )
            for key, value in updates.items():
                part = "provenance" if key in PROVENANCE_FIELDS else "links" if key in LINK_FIELDS else ""
                record = getattr(draft, part) if part else draft
                if key not in _DRAFT_TYPES[part] or key in ("provenance", "links"):
                    raise ValidationError(key, "an assetry_ingest plugin returned an unknown field")
                current = changes[part].get(key, getattr(record, key))
                if key == "tags":
                    changes[part][key] = _union(current, _as_list(value))
                elif key in ("extra", "parameters"):
                    if not isinstance(value, Mapping):
                        raise ValidationError(key, "expected a mapping (value from an assetry_ingest plugin)")
                    changes[part][key] = {**value, **current}
                elif current in (None, (), [], {}):
                    changes[part][key] = value
        try:
            typed = {
                part: {
                    key: _convert.structure(value, _DRAFT_TYPES[part][key], prefix=key)
                    for key, value in fields.items()
                }
                for part, fields in changes.items()
            }
            # A part no plugin touched is kept as it is (most plugins return only top-level fields).
            parts = {
                part: attrs.evolve(getattr(draft, part), **typed[part])
                for part in ("provenance", "links")
                if typed[part]
            }
            return attrs.evolve(draft, **typed[""], **parts)
        except ValidationError as exc:
            reason = f"{exc.reason} (value from an assetry_ingest plugin)"
            raise ValidationError(_flat_field(exc.field), reason) from None

    def _commit_batch(
        self,
        batch: list[tuple[Content, AssetDraft]],
        on_duplicate: OnDuplicate,
        taken: Mapping[str, Asset],
        progress: Callable[[int], None] | None,
        started: int,
    ) -> IngestReport:
        """Store one batch's blobs, then commit its new records. ``started`` is when the ingest began
        (`DigestCache.started`), before it looked at any file."""
        enriched: dict[int, AssetDraft] = {}

        def enrich_new_content(index: int, blob: StoredBlob) -> None:
            # A blob written just now was referenced by no record (blobs go before rows, rows before
            # blobs), so its asset is new: enrich it while the other blobs are still being written.
            content, draft = batch[index]
            if blob.written and draft.id is None:
                enriched[index] = self._enrich(draft, content)

        done: list[StoredBlob] = []  # every blob put, for the discard if anything fails
        contents = [c for c, _ in batch]
        algorithm = self.config.storage.digest
        known = self._digests.lookup(contents, algorithm) if self._digests else {}
        served: set[int] = set()  # the contents `known` spared a read
        try:
            # Shared with other ingests; a deletion waits until this batch's records are committed.
            with self.blobs.lock(exclusive=False), contextlib.ExitStack() as locks:
                stored = self._put_blobs(contents, progress, enrich_new_content, done, known, served)
                assets: list[Asset] = []
                new: list[Asset] = []
                # Assets asked to be pinned by an item that found them already there: dropping the pin
                # would leave them to GC.
                to_pin: set[str] = set()
                if on_duplicate == "skip":
                    # From the duplicate lookup to the commit, one ingest at a time: two processes adding
                    # the same files would otherwise each miss the other's records, and both add them.
                    locks.enter_context(self._commit_lock())
                existing = self._find_duplicates(batch, stored) if on_duplicate == "skip" else {}
                for index, ((content, draft), blob) in enumerate(zip(batch, stored, strict=True)):
                    # Duplicates are judged on what the caller gave (label or file name, project, tenant),
                    # before enrichment, which then runs only for content that is new to the catalog.
                    key = (blob.digest, self._label(draft, content, None), draft.project, draft.tenant)
                    if draft.id is not None and draft.id in taken:
                        held = taken[draft.id]
                        if held.tenant != draft.tenant:
                            raise ValidationError(
                                "id", f"{draft.id!r} is taken (ids are unique in the store, across tenants)"
                            )
                        if (held.digest, _duplicate_label(held), held.project, held.tenant) != key:
                            raise ValidationError(
                                "id", f"{draft.id!r} already exists with other content or label"
                            )
                        if draft.pinned and not held.pinned:
                            to_pin.add(held.id)
                        assets.append(held)
                        continue
                    if key in existing:
                        held = existing[key]
                        if draft.pinned and not held.pinned:
                            to_pin.add(held.id)
                        assets.append(held)
                        continue
                    full = enriched[index] if index in enriched else self._enrich(draft, content)
                    # The plugins read the source after it was stored: if it changed meanwhile (a generator
                    # still writing), the metadata may describe other bytes than the blob holds.
                    content.check_unchanged()
                    self._check_embedding(full)
                    asset = self._build_asset(full, content, blob.digest, blob.size)
                    if on_duplicate == "skip":
                        existing[key] = asset  # the same file twice in one batch is one asset too
                    assets.append(asset)
                    new.append(asset)
                if to_pin:  # one of them may be new in this batch, and named again with the pin
                    new = [attrs.evolve(a, pinned=True) if a.id in to_pin else a for a in new]
                    assets = [attrs.evolve(a, pinned=True) if a.id in to_pin else a for a in assets]
                    to_pin -= {a.id for a in new}
                if new:
                    self.catalog.insert(new)
                if to_pin:
                    if on_duplicate != "skip":
                        locks.enter_context(self._commit_lock())
                    # Read again under the commit lock, so that an update made elsewhere is not undone.
                    current = self.catalog.get_many(to_pin).values()
                    if pins := [attrs.evolve(a, pinned=True) for a in current if not a.pinned]:
                        self.catalog.update(pins)
        except BaseException:
            # A failed put, an enrichment plugin's invalid value or a failed commit: nothing of this
            # batch stays. Outside the shared lock: the discard is a deletion, which waits for other
            # ingests to commit (one may have found a blob this batch wrote, and reference it).
            self._discard_new_blobs(done)
            raise
        if self._digests:
            hashed = ((contents[i], blob.digest) for i, blob in enumerate(stored) if i not in served)
            self._digests.record(hashed, algorithm, started)
        if new:
            self.plugins.hook.assetry_index(assets=new, store=self)
        written = [b for b in stored if b.written]
        return IngestReport(
            assets, len(new), len(assets) - len(new), len(written), sum(b.size for b in written), len(served)
        )

    def _commit_lock(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on ``commit.lock`` beside a local catalog (every process that opens the store
        takes it there). A remote catalog has none: object stores offer no lock."""
        location = self.config.catalog_url
        if is_url(location):
            return contextlib.nullcontext()
        return flock(os.path.join(location, "commit.lock"), exclusive=True)

    def _put_blobs(
        self,
        contents: Sequence[Content],
        progress: Callable[[int], None] | None,
        on_stored: Callable[[int, StoredBlob], None] | None,
        done: list[StoredBlob],
        known: Mapping[int, str],
        served: set[int],
    ) -> list[StoredBlob]:
        """Store every content's blob, in parallel where the backend allows it (``put_workers``).

        Hashing and copying release the GIL, so a local store on two cores writes small files faster
        than one ``cp`` process. ``on_stored(index, blob)`` runs in this thread as each blob is stored,
        while the others are still being written. Every blob put goes into ``done``, failure or not; on
        any failure (of a put or of ``on_stored``) the first, in input order, is raised, and removing
        the blobs written is the caller's (`_discard_new_blobs`, outside the shared store lock).

        ``known`` are digests the digest cache remembers for some contents (by index): when that blob
        is stored already, the content is not read at all, and its index goes into ``served``.
        """
        workers = max(1, min(self.blobs.put_workers, len(contents)))
        stored: list[StoredBlob | None] = [None] * len(contents)
        failures: dict[int, BaseException] = {}

        def put_one(index: int) -> StoredBlob:
            content = contents[index]
            digest = known.get(index)
            if digest is not None and self.blobs.has(digest):
                served.add(index)
                return StoredBlob(digest=digest, size=content.size, written=False)
            return self.blobs.put(content)

        def stored_one(index: int, blob: StoredBlob) -> None:
            stored[index] = blob
            if progress:
                progress(1)
            if on_stored is not None:
                on_stored(index, blob)

        interrupted: list[int] = []
        try:
            _run_puts(len(contents), workers, put_one, stored_one, stored, failures, interrupted)
        finally:
            # Whatever ends the puts (a KeyboardInterrupt included), what they wrote is known.
            put = [blob for blob in stored if blob is not None]
            done.extend(put)
            for index in interrupted:
                done.extend(self._maybe_stored(contents[index], known.get(index)))
        if failures:
            index = min(failures)
            failure = failures[index]
            if isinstance(failure, OSError):
                reason = failure.strerror or str(failure)
                name = contents[index].name or "source"
                if _is_write_failure(failure, contents[index]):
                    raise BackendError(f"{self.blobs.describe()}: cannot store {name}: {reason}") from None
                raise SourceError(name, f"cannot read: {reason}") from None
            raise failure
        # Equal contents put at the same moment may both report a write: count one write per digest.
        # (Only an earlier *write* of the digest demotes a later one: an earlier put that found the blob
        # already stored, because a concurrent put had just written it, must not cancel that write.)
        return _one_write_per_digest(put)

    def _maybe_stored(self, content: Content, known: str | None) -> list[StoredBlob]:
        """The blob a put interrupted by Ctrl-C may have published just before, counted as written: the
        discard that follows removes it unless a record refers to it, as it does every blob the batch
        wrote. Its digest is the digest cache's, else the content is hashed again, up to
        `REHASH_ON_INTERRUPT` bytes: a Ctrl-C must not wait for gigabytes to be read (the window in which
        a put has published and not yet returned is a few system calls long, against the seconds such
        a put takes). Nothing if the source cannot be read."""
        if known is not None:
            return [StoredBlob(digest=known, size=content.size, written=True)]
        if content.size > REHASH_ON_INTERRUPT:
            name = content.name or "unnamed content"
            log.debug("interrupted storing %s; not hashing it again to find its blob", name)
            return []
        try:
            with content.open() as reader:
                digest, size = digest_stream(reader, self.config.storage.digest)
        except OSError:
            return []
        return [StoredBlob(digest=digest, size=size, written=True)]

    def _find_duplicates(
        self, batch: list[tuple[Content, AssetDraft]], stored: list[StoredBlob]
    ) -> dict[tuple[str, str, str | None, str], Asset]:
        existed = {b.digest for b in stored if not b.written}
        # No record referenced a blob when this batch wrote it, but another process may since have
        # found it stored and committed records for it: counted first (one lookup, ~3 ms for 2,000
        # digests), the records read only where there are some.
        written = {b.digest for b in stored if b.written} - existed
        if written:
            existed |= {digest for digest, count in self.catalog.digest_references(written).items() if count}
        digests = tuple(existed)
        if not digests:
            return {}
        found: dict[tuple[str, str, str | None, str], Asset] = {}
        tenants = {d.tenant for _, d in batch}
        for tenant in tenants:
            for chunk in _chunks(digests, 500):
                # One query per 500 digests, not one per asset.
                for asset in self._find_all(Filter(tenant=tenant, digests=chunk)):
                    key = (asset.digest or "", _duplicate_label(asset), asset.project, asset.tenant)
                    found.setdefault(key, asset)
        return found

    def _find_all(self, where: Filter) -> Iterator[Asset]:
        offset = 0
        while True:
            page = self.catalog.find(where, order="id", limit=1000, offset=offset)
            yield from page
            if len(page) < 1000:
                return
            offset += 1000

    def _label(self, draft: AssetDraft, content: Content, asset_id: str | None) -> str:
        """The caller's label, else the file's name, else one made from the kind and the asset id. With
        no id (judging duplicates, before there is one), that last is "": see `_duplicate_label`."""
        if draft.label:
            return draft.label
        if content.name:
            # A name that is not valid UTF-8 (kept by Python as surrogate escapes) cannot be stored as
            # text: its undecodable bytes show as U+FFFD, as a file manager shows them.
            name = content.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            with contextlib.suppress(ValidationError):
                check_label(name)
                return name
        if asset_id is None:
            return ""
        kind = draft.kind or Kind.from_media_type(draft.media_type)
        return _id_label(kind, asset_id)

    def _build_asset(self, draft: AssetDraft, content: Content, digest: str, size: int) -> Asset:
        asset_id = draft.id or new_id()
        media_type = draft.media_type or "application/octet-stream"
        fields = {
            a.name: getattr(draft, a.name)
            for a in attrs.fields(AssetDraft)
            if a.name not in ("id", "label", "kind", "media_type")
        }
        return Asset(
            id=asset_id,
            label=self._label(draft, content, asset_id),
            kind=draft.kind or Kind.from_media_type(media_type),
            media_type=media_type,
            size=size,
            digest=digest,
            status=Status.AVAILABLE,
            created_at=utcnow(),
            **fields,
        )

    def _discard_new_blobs(self, stored: Sequence[StoredBlob]) -> None:
        """After a failed ingest, remove the blobs it wrote, unless something else references them (a
        concurrent writer may have committed the same content). Under the store's exclusive lock, so
        never call it while holding the shared one."""
        fresh = {b.digest for b in stored if b.written}
        if not fresh:
            return
        with contextlib.suppress(Exception), self.blobs.lock(exclusive=True):
            refs = self.catalog.digest_references(fresh)
            for digest in fresh:
                if refs.get(digest, 0) == 0:
                    self.blobs.delete(digest)

    # -- access ---------------------------------------------------------------------------------------

    def get(self, asset_id: str) -> Asset:
        """The record for an id in this store's tenant; raises `AssetNotFound`."""
        _check_id(asset_id)
        found = self.catalog.get_many([asset_id], tenant=self.tenant)
        if asset_id not in found:
            raise AssetNotFound(asset_id)
        return found[asset_id]

    def get_many(self, asset_ids: Iterable[str]) -> dict[str, Asset]:
        """The records of the ids found in this store's tenant, in the order asked (ids not found are
        left out): one catalog read per 1,000 ids, where `get` costs one per id."""
        return self.catalog.get_many(_id_list(asset_ids, "asset_ids"), tenant=self.tenant)

    def resolve(self, id_or_prefix: str) -> Asset:
        """Like `get`, but also accepts a unique id prefix (at least 4 characters), as git does."""
        _check_id(id_or_prefix)
        with contextlib.suppress(AssetNotFound):
            return self.get(id_or_prefix)
        if len(id_or_prefix) >= 4:
            matches = self.catalog.ids_with_prefix(id_or_prefix, tenant=self.tenant, limit=5)
            if len(matches) == 1:
                return self.get(matches[0])
            if matches:
                raise AmbiguousId(id_or_prefix, matches)
            raise AssetNotFound(id_or_prefix)
        raise AssetNotFound(id_or_prefix, hint="an id prefix needs at least 4 characters")

    def open(self, asset_id: str | Asset, *, action: str = "open", actor: str | None = None) -> BinaryIO:
        """A binary reader over the content; records the access."""
        _check_use(action, actor)
        asset = asset_id if isinstance(asset_id, Asset) else self.get(asset_id)
        if asset.tenant != self.tenant:  # a record read through another tenant's store
            raise AssetNotFound(asset.id)
        if asset.status is not Status.AVAILABLE or asset.digest is None:
            raise ValidationError("status", f"asset {asset.id} is {asset.status.value}; it has no content")
        try:
            reader = self.blobs.open(asset.digest)
        except BlobNotFound as exc:  # a row whose blob is gone: name the asset, not just the digest
            raise BlobNotFound(exc.digest, asset=f"{asset.id} ({asset.label})") from None
        self.plugins.hook.assetry_access(asset=asset, action=action, actor=actor)
        return reader

    def read(self, asset_id: str | Asset, *, actor: str | None = None) -> bytes:
        """The whole content as bytes (for small assets; use `open` for large ones)."""
        with self.open(asset_id, action="read", actor=actor) as f:
            return f.read()

    def record_use(self, asset_id: str, action: str, *, actor: str | None = None) -> None:
        """Record a use that does not read content here (``embed``, ``transform``, ``view`` in a UI)."""
        _check_use(action, actor)
        self.plugins.hook.assetry_access(asset=self.get(asset_id), action=action, actor=actor)

    def url(self, asset_id: str, *, expires: timedelta | int = 3600, actor: str | None = None) -> str:
        """A time-limited download URL, where the storage backend can sign one (`NotSupported` otherwise)."""
        _check_use("url", actor)
        if isinstance(expires, bool) or not isinstance(expires, (timedelta, int, float)):
            raise ValidationError("expires", f"expected seconds or a timedelta, got {type(expires).__name__}")
        try:
            seconds = expires if isinstance(expires, timedelta) else timedelta(seconds=expires)
        except (OverflowError, ValueError):  # inf, nan, or more days than a timedelta holds
            raise ValidationError("expires", f"{expires!r} is not a usable number of seconds") from None
        if seconds <= timedelta(0):
            raise ValidationError("expires", f"must be a positive duration, got {expires!r}")
        asset = self.get(asset_id)
        if asset.digest is None:
            raise ValidationError("status", f"asset {asset.id} has no content")
        signed = self.blobs.signed_url(asset.digest, seconds)
        self.plugins.hook.assetry_access(asset=asset, action="url", actor=actor)
        return signed

    def export(
        self,
        assets: Iterable[str] | Mapping[str, str],
        directory: str | os.PathLike[str],
        *,
        manifest: str | None = "manifest.json",
        overwrite: bool = False,
        actor: str | None = None,
    ) -> dict[str, Path]:
        """Materialise assets as real files for tools that need paths.

        Files are named by label (``name (2).png`` on collisions) inside ``directory``. With a mapping
        ``{key: asset_id}``, the manifest maps each key to its absolute path (the ``input_data.json``
        shape tools expect); otherwise it maps asset ids to paths. Returns that mapping.
        """
        _check_use("export", actor)
        if isinstance(assets, Mapping):
            keyed = dict(assets)
            _id_list(list(keyed.values()), "assets")
        else:
            keyed = {a: a for a in _id_list(assets, "assets")}
        for key in keyed:
            check_label(key, "key")
        if not isinstance(directory, (str, os.PathLike)):
            raise ValidationError("directory", f"expected a path, got {type(directory).__name__}")
        check_path(directory, "directory")
        location = os.fspath(directory)
        if is_url(location):
            raise ValidationError("directory", "export writes local files; give a local directory, not a URL")
        target = Path(location.removeprefix("file://"))
        if target.exists() and not target.is_dir():
            raise SourceError(target.name, "export target exists and is not a directory")
        full = self.get_many(keyed.values())  # one read for the full ids; prefixes are resolved apart
        records = {key: full.get(asset_id) or self.resolve(asset_id) for key, asset_id in keyed.items()}
        if manifest is not None:
            check_label(manifest, "manifest")
        # An asset labelled like the manifest gets another name: the manifest would overwrite it.
        names = _unique_names([r.label for r in records.values()], reserved=[manifest] if manifest else [])
        plan = {key: target / name for key, name in zip(records, names, strict=True)}
        if not overwrite:
            for path in [*plan.values(), *([target / manifest] if manifest else [])]:
                if path.exists():
                    raise SourceError(path.name, "already exists in the export directory (use overwrite)")
        result: dict[str, Path] = {}
        created: list[Path] = []  # removed if the export fails, so that running it again is not refused
        made_directory = not target.exists()
        path = target
        try:
            target.mkdir(parents=True, exist_ok=True)
            for key, record in records.items():
                path = plan[key]
                existed = path.exists()
                with _atomic_write(path) as dst:
                    for chunk in self._content_chunks(record, actor):
                        dst.write(chunk)
                if not existed:
                    created.append(path)
                result[key] = path.resolve()
            if manifest is not None:
                path = target / manifest
                with _atomic_write(path) as f:
                    f.write(json.dumps({k: str(v) for k, v in result.items()}, indent=2).encode() + b"\n")
        except BaseException as exc:
            for done in created:
                done.unlink(missing_ok=True)
            if made_directory:
                with contextlib.suppress(OSError):  # left if anything else was written there meanwhile
                    target.rmdir()
            if isinstance(exc, OSError):  # writing the export (reading the store fails as BackendError)
                raise SourceError(path.name, exc.strerror or str(exc)) from None
            raise
        return result

    def _content_chunks(self, record: Asset, actor: str | None) -> Iterator[bytes]:
        """An asset's content for export, 1 MiB at a time. A failure to read it names the asset (the
        export's own write errors name the file written)."""
        try:
            with self.open(record, action="export", actor=actor) as reader:
                while chunk := reader.read(1024 * 1024):
                    yield chunk
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise BackendError(
                f"asset {record.id} ({record.label}): cannot read its content: {reason}"
            ) from None

    # -- search ---------------------------------------------------------------------------------------

    def filter(self, **filters: Any) -> Filter:
        """Validate keyword filters into a `Filter` scoped to this store's tenant."""
        if "tenant" in filters and filters["tenant"] != self.tenant:
            raise ValidationError("tenant", "queries are scoped to the store's tenant; open the store for it")
        for key in ("kind", "tags", "any_tags", "ids", "digests"):
            if isinstance(filters.get(key), str):
                filters[key] = [filters[key]]
        for key in ("min_size", "max_size"):
            if isinstance(filters.get(key), str):
                filters[key] = parse_size(filters[key], field=key)
        filters["tenant"] = self.tenant
        return _convert.structure(filters, Filter)

    def find(
        self,
        *,
        order: str = "-created_at",
        limit: int = 50,
        offset: int = 0,
        after: str | None = None,
        **filters: Any,
    ) -> Page:
        """Assets matching the filters (see `Filter`), in a stable order, one page at a time.

        :param after: ``page.next_cursor`` of the previous page (same filters and order): continues
            right after its last asset. Deep pages stay fast (an ``offset`` sorts every earlier key
            again), and assets added or deleted meanwhile do not shift the pages.
        """
        _check_order(order)
        _check_window(limit, offset)
        where = self.filter(**filters)
        more: bool | None = None  # (known here only for a cursor's page)
        if after is None:
            items = self.catalog.find(where, order=order, limit=limit, offset=offset)
        else:
            if offset:
                raise ValidationError("offset", "give an offset or a cursor (after), not both")
            cursor = Cursor.decode(after)
            if cursor.order != order:
                raise ValidationError("after", f"was made for order {cursor.order!r}, not {order!r}")
            if cursor.filters != filter_digest(where):
                raise ValidationError("after", "was made for other filters (or another tenant)")
            offset = cursor.offset
            # One asset more than the page, to tell whether another page follows: the cursor's offset
            # and a fresh count disagree as soon as earlier matches are added, deleted or stop matching.
            items = self.catalog.find_after(where, order=order, limit=limit + 1, after=cursor)
            more, items = len(items) > limit, items[:limit]
        total = self.catalog.count(where) if len(items) == limit or offset else len(items)
        end = offset + len(items)
        if more is None:
            more = bool(items) and end < total
        cursor_next = Cursor.after(items[-1], order, end, where).encode() if more else None
        return Page(items, offset, limit, total, cursor_next)

    def iter(self, *, order: str = "id", **filters: Any) -> Iterator[Asset]:
        """Every matching asset, in ``order``: the matching ids are listed once, then their records read
        1,000 at a time (pages by offset would sort everything before each page again: quadratic in
        the catalog's size). An asset deleted while the walk goes on is skipped."""
        _check_order(order)
        ids = self.catalog.ordered_ids(self.filter(**filters), order=order)
        for start in range(0, len(ids), ITER_CHUNK):
            chunk = ids[start : start + ITER_CHUNK]
            found = self.catalog.get_many(chunk, tenant=self.tenant)
            yield from (found[asset_id] for asset_id in chunk if asset_id in found)

    def search(
        self,
        text: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        limit: int = 10,
        **filters: Any,
    ) -> list[Hit]:
        """Full-text search over labels, prompts and tags, vector search over embeddings, or both (fused by
        reciprocal rank), with the same filters as `find`."""
        if text is not None and not isinstance(text, str):
            raise ValidationError("text", f"expected a string, got {type(text).__name__}")
        if not text and vector is None:
            raise ValidationError("text", "give search text, a vector, or both")
        _check_window(limit)
        query = SearchQuery(
            text=text or None,
            vector=self._vector(vector) if vector is not None else None,
            filter=self.filter(**filters),
            limit=limit,
        )
        return self.catalog.search(query)

    def similar(self, to: str | Sequence[float], *, limit: int = 10, **filters: Any) -> list[Hit]:
        """Assets whose embeddings are nearest to an asset's (excluding it) or to a vector."""
        _check_window(limit)
        exclude: tuple[str, ...] = ()
        if isinstance(to, Asset):
            to = to.id
        if isinstance(to, str):
            asset = self.resolve(to)
            if asset.embedding is None:
                raise ValidationError("embedding", f"asset {asset.id} has no embedding to compare with")
            vector, exclude = asset.embedding, (asset.id,)
        elif isinstance(to, (bytes, Mapping)) or not isinstance(to, Iterable):
            raise ValidationError("to", f"expected an asset id or a vector, got {type(to).__name__}")
        else:
            vector = self._vector(to)
        query = SearchQuery(
            vector=tuple(vector), filter=self.filter(**filters), limit=limit, exclude_ids=exclude
        )
        return self.catalog.search(query)

    def _vector(self, vector: Sequence[float]) -> tuple[float, ...]:
        values = _convert.structure(vector, tuple[float, ...], prefix="vector")
        if len(values) != self.config.vectors.dimension:
            raise ValidationError(
                "vector", f"has {len(values)} dimensions; the store uses {self.config.vectors.dimension}"
            )
        check_float32_range(values, "vector")  # what the index compares in
        self._check_direction(values, "vector")
        return values

    # -- change ---------------------------------------------------------------------------------------

    def update(self, asset_id: str, **changes: Any) -> Asset:
        """Change metadata fields (not content, id, tenant or usage). ``tags`` replaces the tag list; use
        ``add_tags`` / ``remove_tags`` to edit it; ``extra`` is merged key by key (a None value deletes)."""
        # Shared store lock: a deletion or GC (exclusive) sees no update in flight, so a pin it re-reads is
        # the last word. Commit lock: the read below and the write are one step, so two processes
        # changing one asset (one pins, one tags) do not each write back the record they read.
        with self.blobs.lock(exclusive=False), self._commit_lock():
            return self._update(asset_id, changes)

    def _update(self, asset_id: str, changes: dict[str, Any]) -> Asset:
        asset = self.resolve(asset_id)
        add_tags = _as_list(changes.pop("add_tags", []), "add_tags")
        remove_tags = set(_as_list(changes.pop("remove_tags", []), "remove_tags"))
        for key in changes:
            if key not in UPDATABLE_FIELDS and key != "meta":
                raise ValidationError(key, "cannot be updated (unknown or immutable field)")
        data = _convert.unstructure(asset)
        for key, value in changes.items():
            if key in ("extra", "meta"):
                if not isinstance(value, Mapping):
                    raise ValidationError(key, "expected a mapping")
                merged = {**data["extra"], **value}
                data["extra"] = {k: v for k, v in merged.items() if v is not None}
            elif key in PROVENANCE_FIELDS:
                data["provenance"][key] = value
            elif key in LINK_FIELDS:
                data["links"][key] = value
            else:
                data[key] = value
        data["tags"] = [t for t in _union(_as_list(data["tags"]), add_tags) if t not in remove_tags]
        updated = _convert.structure(data, Asset)
        if updated.embedding is not None and len(updated.embedding) != self.config.vectors.dimension:
            raise ValidationError("embedding", f"must have {self.config.vectors.dimension} dimensions")
        if updated.embedding is not None:
            self._check_direction(updated.embedding, "embedding")
        if updated != asset:
            self.catalog.update([updated])
        return updated

    def pin(self, asset_id: str, pinned: bool = True) -> Asset:
        """Protect an asset from quota eviction (or lift the protection)."""
        return self.update(asset_id, pinned=pinned)

    def delete(self, asset_ids: str | Iterable[str], *, actor: str | None = None) -> DeleteReport:
        """Delete assets and every blob no remaining asset references. Plugins may veto
        (`assetry_evict` with reason ``delete``)."""
        ids = _id_list(asset_ids, "asset_ids")
        _check_use("delete", actor)
        # One record per asset, however often it was named (an id and a prefix of it, say).
        records = list({r.id: r for r in (self.resolve(i) for i in ids)}.values())
        spared = self._vetoes(records, "delete", dry_run=False) & {r.id for r in records}
        victims = [r for r in records if r.id not in spared]
        _, deleted = self._remove([(v.id, v.digest, v.size) for v in victims])
        blobs, freed = len(deleted), sum(size for size in deleted.values())
        for record in victims:
            log.info(
                "deleted asset %s (%s, %d bytes)%s",
                record.id,
                record.label,
                record.size,
                f" by {actor}" if actor else "",
            )
        return DeleteReport([r.id for r in victims], sorted(spared), blobs, freed)

    def _vetoes(self, records: Sequence[Asset], reason: str, *, dry_run: bool) -> set[str]:
        if not records:
            return set()
        spared: set[str] = set()
        hook = self.plugins.hook.assetry_evict
        for result in hook(assets=list(records), reason=reason, dry_run=dry_run):
            # Taken once (a generator can be read only once); a lone id is iterable too, as single
            # characters: the veto would be lost and the asset gone.
            ids = None if isinstance(result, str) else list(_iterable(result))
            if ids is None or not all(isinstance(i, str) for i in ids):
                raise PluginError(
                    f"assetry_evict must return a list of asset ids or None, and one returned {result!r:.80} "
                    f"(implemented by {implementers(hook)})"
                )
            spared.update(ids)
        return spared

    def _remove(
        self, victims: Sequence[tuple[str, str | None, int]], *, unless_pinned: bool = False
    ) -> tuple[set[str], dict[str, int]]:
        """Rows first, then blobs whose reference count, recomputed from the catalog, is zero.
        ``victims`` are (id, digest, size). With ``unless_pinned``, assets pinned since the caller read
        them stay. Returns the ids removed and the deleted blobs' sizes by digest."""
        if not victims:
            return set(), {}
        deleted: dict[str, int] = {}
        # Exclusive: an ingest that found one of these blobs stored commits its record first, and the
        # recount below sees it. No update is half done either (updates hold the shared store lock and
        # the commit lock; the latter also where the store lock is a no-op, blobs on S3 beside a local
        # catalog), so the pins read here are the last word until the rows are gone.
        with self.blobs.lock(exclusive=True), self._commit_lock():
            if unless_pinned:
                pinned = self._pinned([asset_id for asset_id, _, _ in victims])
                victims = [v for v in victims if v[0] not in pinned]
            if not victims:
                return set(), {}
            self.catalog.delete([asset_id for asset_id, _, _ in victims])
            sizes = {digest: size for _, digest, size in victims if digest}
            refs = self.catalog.digest_references(sizes)
            for digest, size in sizes.items():
                if refs.get(digest, 0) == 0:
                    self.blobs.delete(digest)
                    deleted[digest] = size
        return {asset_id for asset_id, _, _ in victims}, deleted

    def _pinned(self, ids: Sequence[str]) -> set[str]:
        """Which of these assets are pinned: one query for up to 1,000 ids, else one scan listing every
        pinned id (measured with few pinned: 5-11 ms at 100k rows, ~15 ms at 1M; a query for 1,000 ids
        took ~9 ms at 100k)."""
        if len(ids) <= 1000:
            return set(self.catalog.ordered_ids(Filter(ids=tuple(ids), pinned=True), order="id"))
        return set(self.catalog.ordered_ids(Filter(pinned=True), order="id")) & set(ids)

    # -- eviction -------------------------------------------------------------------------------------

    def gc(self, quota: int | str | None = None, *, dry_run: bool = False) -> GcReport:
        """Evict least recently used assets until the stored bytes (each blob counted once) fit the quota.

        Pinned and pending assets are never evicted. A blob shared by several assets is freed only when
        the last of them goes, so evicting an asset may free nothing. The quota is store-wide (all
        tenants share the storage). ``dry_run`` reports the same victims without removing anything.
        """
        if quota is None:
            quota = self.config.gc.quota_bytes
            if quota is None:
                raise ValidationError("quota", "give a quota (or set [gc] quota in assetry.toml)")
        limit = parse_size(quota, field="quota")
        self.flush()  # LRU order must include the accesses still in the buffer
        usage, scanned = self.catalog.lru_scan()
        rows = _Pushback(scanned)
        before = remaining = usage.stored_bytes
        evicted: list[Eviction] = []
        spared: list[str] = []
        refs: dict[str, int] = {}
        # Whole records are read only for plugins that may veto; the LRU rows carry all GC itself needs
        # (reading 31 columns per victim made GC grow faster than linearly, docs/benchmarks.md).
        vetoing = bool(self.plugins.hook.assetry_evict.get_hookimpls())

        def plan() -> tuple[list[Eviction], list[LruRow]]:
            """The next least recently used candidates, until what they free meets the quota."""
            nonlocal remaining
            victims: list[Eviction] = []
            doomed: list[LruRow] = []
            while remaining > limit and (chunk := rows.take(1024)):
                vetoed: set[str] = set()
                if vetoing:
                    records = self.catalog.get_many([r.asset_id for r in chunk])
                    chunk = [r for r in chunk if r.asset_id in records]  # others went since the scan
                    vetoed = self._vetoes([records[r.asset_id] for r in chunk], "quota", dry_run=dry_run)
                for index, row in enumerate(chunk):
                    if remaining <= limit:
                        rows.push_back(chunk[index:])  # candidates again if a victim turns out pinned
                        break
                    if row.asset_id in vetoed:
                        spared.append(row.asset_id)
                        continue
                    freed = 0
                    if row.digest:
                        refs[row.digest] = refs.get(row.digest, row.references) - 1
                        if refs[row.digest] == 0:
                            freed = row.size
                    remaining -= freed
                    doomed.append(row)
                    victims.append(Eviction(row.asset_id, row.label, row.size, row.last_used, freed))
            return victims, doomed

        while remaining > limit:
            victims, doomed = plan()
            if dry_run or not doomed:
                evicted += victims
                break
            removed, deleted = self._remove(
                [(r.asset_id, r.digest, r.size) for r in doomed], unless_pinned=True
            )
            for row in doomed:
                if row.asset_id not in removed:  # pinned since the scan: it stays, and the next go instead
                    spared.append(row.asset_id)
                    if row.digest:
                        refs[row.digest] += 1
            # What was freed, from the blobs actually deleted: one of them may have been kept for a pinned
            # asset, or for an asset that an ingest meanwhile added with the same content.
            evicted += _settle_evictions([v for v in victims if v.asset_id in removed], doomed, deleted)
            remaining = before - sum(e.freed for e in evicted)
        for victim in evicted if log.isEnabledFor(logging.INFO) else ():
            log.info(
                "%s asset %s (%s, %d bytes, last used %s) to meet quota %d",
                "would evict" if dry_run else "evicted",
                victim.asset_id,
                victim.label,
                victim.size,
                victim.last_used.isoformat(timespec="seconds"),
                limit,
            )
        # What is left by the scan's count and the blobs deleted (counting the whole catalog again would be
        # a second full scan); in a dry run, by the plan.
        return GcReport(limit, before, remaining, dry_run, evicted, spared)

    # -- reports --------------------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        self.flush()
        return StoreStats(
            usage=self.catalog.storage_usage(tenant=self.tenant),
            by_kind=self.catalog.counts_by_kind(tenant=self.tenant),
            storage=self.blobs.describe(),
            catalog=self.catalog.describe(),
            plugins=[name for name, plugin in self.plugins.list_name_plugin() if plugin is not None],
        )

    def __repr__(self) -> str:
        return f"<Store {self.tenant!r}: {self.blobs.describe()}, {self.catalog.describe()}>"


# -- helpers ------------------------------------------------------------------------------------------------


def _close_backends(
    usage: UsageRecorder | None, catalog: Catalog, blobs: BlobStore, digests: digest_cache.DigestCache | None
) -> None:
    try:
        if usage is not None:
            usage.flush()
    except AssetryError as exc:  # a catalog that cannot be written (read-only, gone): one line, no traceback
        log.error("could not write buffered usage events: %s", exc)
    except Exception:
        log.exception("could not write buffered usage events")
    finally:
        if digests is not None:
            digests.close()
        catalog.close()
        blobs.close()


def _run_puts(
    count: int,
    workers: int,
    put_one: Callable[[int], StoredBlob],
    stored_one: Callable[[int, StoredBlob], None],
    stored: list[StoredBlob | None],
    failures: dict[int, BaseException],
    interrupted: list[int],
) -> None:
    """``put_one`` for indexes 0 to ``count - 1`` on ``workers`` threads, this one included, and
    ``stored_one`` for each result in this thread; stops at the first failure (into ``failures``).

    Every blob written ends up in ``stored``, whatever ends the run, except that of a put this thread
    was making when a Ctrl-C (or `SystemExit`) came: it may have been published just before, so its
    index goes into ``interrupted`` for the caller to check.
    """
    # A few long-lived threads taking the next index, not one future per file: submitting thousands of
    # futures was a tenth of a bulk ingest in the profile. This thread puts too, between handling the
    # others' results, rather than sleeping until each arrives: one thread fewer wants the GIL, and none
    # is woken per file (2,000 files of 256 KiB on 2 cores: ~12% faster, a third of the context
    # switches, against 2 helpers and a waiting main thread).
    indexes = iter(range(count))
    take = threading.Lock()
    stop = threading.Event()
    results: queue.SimpleQueue[tuple[int, StoredBlob | BaseException]] = queue.SimpleQueue()

    def next_index() -> int | None:
        with take:
            return None if stop.is_set() else next(indexes, None)

    def work() -> None:
        while (index := next_index()) is not None:
            try:
                blob = put_one(index)
            except BaseException as exc:
                results.put((index, exc))
            else:
                # Recorded here, not only by `stored_one`: a Ctrl-C in the main thread between taking a
                # result and recording it would otherwise lose a blob that was written.
                stored[index] = blob
                results.put((index, blob))

    helpers = [
        threading.Thread(target=work, name=f"assetry-put-{n}", daemon=True) for n in range(workers - 1)
    ]
    for thread in helpers:
        thread.start()
    try:
        for _ in range(count):
            outcome: StoredBlob | BaseException
            index = next_index() if results.empty() else None
            if index is not None:
                try:
                    outcome = stored[index] = put_one(index)
                except Exception as exc:
                    outcome = exc
                except BaseException:
                    interrupted.append(index)
                    raise
            else:
                index, outcome = results.get()
            if isinstance(outcome, BaseException):
                failures[index] = outcome
                return
            try:
                stored_one(index, outcome)
            except BaseException as exc:
                failures[index] = exc
                return
    finally:
        stop.set()
        for thread in helpers:
            thread.join()
        # Puts that finished after a failure are in `stored` already; their own failures count too.
        while not results.empty():
            index, outcome = results.get()
            if isinstance(outcome, BaseException):
                failures.setdefault(index, outcome)


def _one_write_per_digest(blobs: Sequence[StoredBlob]) -> list[StoredBlob]:
    written: set[str] = set()
    result = []
    for blob in blobs:
        if blob.written and blob.digest in written:
            result.append(attrs.evolve(blob, written=False))
            continue
        if blob.written:
            written.add(blob.digest)
        result.append(blob)
    return result


def _flat_field(field: str | None) -> str | None:
    """``provenance.seed`` -> ``seed``: callers pass provenance and link fields flat; errors say so too."""
    if field and field.split(".")[0] in ("provenance", "links"):
        return field.split(".", 1)[1]
    return field


def _id_label(kind: Kind, asset_id: str) -> str:
    """The label of content given none and no usable file name: its kind and the start of its id."""
    return f"{kind.value}-{asset_id[:12]}"


def _duplicate_label(asset: Asset) -> str:
    """The label an asset is judged by as a duplicate: its own, or "" when it was made from its id (no
    label was given): two adds of the same unnamed bytes get different ids, and would never match."""
    return "" if asset.label == _id_label(asset.kind, asset.id) else asset.label


def new_id() -> str:
    """32 random hex digits. Random from the first digit on, so short prefixes (as `assetry ls` shows and
    `resolve` accepts) tell assets apart; creation order lives in ``created_at``."""
    return secrets.token_hex(16)


def iter_files(
    directory: Path, recursive: bool, skip: frozenset[tuple[int, int]] = frozenset()
) -> Iterator[Path]:
    """Regular files under a directory in a stable order; hidden files and directories are skipped, and
    so are the directories in ``skip`` (by device and inode: a store's own, inside the tree added). A
    directory in ``skip`` given itself is an error."""
    if skip and _identity(directory) in skip:
        raise SourceError(directory.name or str(directory), "is this store's own directory")
    return _walk(directory, recursive, skip)


def _walk(directory: Path, recursive: bool, skip: frozenset[tuple[int, int]]) -> Iterator[Path]:
    # `os.scandir`: the directory listing says which entries are directories, where `Path.is_dir` and
    # `is_file` cost a stat each (two per file, on top of the one `Content.from_path` makes).
    with os.scandir(directory) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):  # a symlink to a directory is not followed
            path = directory / entry.name
            if recursive and _identity(path) not in skip:
                yield from _walk(path, recursive, skip)
        elif entry.is_file():  # a symlink to a file is
            yield directory / entry.name


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _is_write_failure(failure: OSError, content: Content) -> bool:
    """Whether a put failed writing into the store (disk full, a file size limit, a path in the store)
    rather than reading its source: the two are told apart so the error blames the right one."""
    if failure.errno in _WRITE_ERRNOS:
        return True
    source = content.local_path
    return failure.filename is not None and (source is None or Path(failure.filename) != source)


def own_directories(config: Config) -> frozenset[tuple[int, int]]:
    """A store's local directories (root, blobs, catalog) that exist, by device and inode: never walked
    when a tree holding them is added, where their locks, manifests and blobs would become assets."""
    own = set()
    for location in {config.root, config.storage_url, config.catalog_url}:
        if not is_url(location):
            with contextlib.suppress(OSError):
                own.add(_identity(Path(location.removeprefix("file://"))))
    return frozenset(own)


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


_DRAFT_TYPES: dict[str, dict[str, Any]] = {
    part: typing.get_type_hints(cls)
    for part, cls in (("", AssetDraft), ("provenance", Provenance), ("links", Links))
}
"""Resolved field types of the draft and its nested records, for structuring plugin values."""


def _freeze(value: Any) -> object:
    """A hashable stand-in for plain data (None when it holds anything else), to cache drafts by value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value), value)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            frozen = _freeze(item)
            if frozen is None or not isinstance(key, str):
                return None
            items.append((key, frozen))
        return ("map", tuple(sorted(items)))
    if isinstance(value, (list, tuple)):
        parts = [_freeze(item) for item in value]
        return None if any(p is None for p in parts) else ("seq", tuple(parts))
    return None


WINDOW_MAX = 2**30
"""The largest limit or offset: LanceDB takes 32-bit counts, and a hybrid search asks each side for twice
its limit."""


def _check_window(limit: int, offset: int = 0) -> None:
    """A page's limit and offset: whole numbers a catalog can take."""
    for field, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(field, f"expected an integer, got {type(value).__name__} {value!r:.40}")
        if value > WINDOW_MAX:
            raise ValidationError(field, f"must be at most 2**30 ({WINDOW_MAX:,})")
    if limit <= 0:
        raise ValidationError("limit", "must be positive")
    if offset < 0:
        raise ValidationError("offset", "must not be negative")


def _check_id(asset_id: object) -> None:
    if not isinstance(asset_id, str):
        hint = " (pass asset.id)" if isinstance(asset_id, Asset) else ""
        raise ValidationError("asset_id", f"expected an id (a string), got {type(asset_id).__name__}{hint}")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValidationError("order", f"{order!r} is not one of {', '.join(ORDERS)}")


class _Closed:
    """Stands in for the backends of a closed store."""

    def __getattr__(self, name: str) -> typing.NoReturn:
        raise StoreClosed("the store is closed; open it again (assetry.open) to use it")


class _Pushback:
    """An iterator of LRU rows that takes back the rows a pass did not use."""

    def __init__(self, rows: Iterable[LruRow]) -> None:
        self._rows = iter(rows)
        self._back: list[LruRow] = []

    def take(self, count: int) -> list[LruRow]:
        taken, self._back = self._back[:count], self._back[count:]
        taken += itertools.islice(self._rows, count - len(taken))
        return taken

    def push_back(self, rows: Sequence[LruRow]) -> None:
        self._back[:0] = rows


def _settle_evictions(
    evicted: list[Eviction], rows: Sequence[LruRow], deleted: Mapping[str, int]
) -> list[Eviction]:
    """What each eviction freed, from the blobs actually deleted: a deleted blob's bytes go to the last
    of its assets evicted, as the plan counts them."""
    digest_of = {r.asset_id: r.digest or "" for r in rows}
    last = {digest_of[e.asset_id]: e.asset_id for e in evicted if digest_of[e.asset_id] in deleted}
    return [
        attrs.evolve(
            e, freed=deleted[d] if (d := digest_of[e.asset_id]) in deleted and last[d] == e.asset_id else 0
        )
        for e in evicted
    ]


def _iterable(value: Any) -> Iterable[Any]:
    return value if isinstance(value, Iterable) else [value]


def _as_list(value: Any, field: str = "tags") -> list[str]:
    """A tag or tags (any iterable of strings) as a list; anything else is an error naming ``field``."""
    if value is None:
        return []
    return _strings(value, field, "a tag or a list of tags", "tags")


def _id_list(value: Any, field: str) -> list[str]:
    """An id or ids (any iterable of strings) as a list; anything else is an error naming ``field``."""
    return _strings(value, field, "an id or a list of ids", "ids")


def _strings(value: Any, field: str, expected: str, plural: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    hint = " (pass asset.id)" if isinstance(value, Asset) else ""
    if isinstance(value, (bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(field, f"expected {expected}, got {type(value).__name__}{hint}")
    items = list(value)
    for item in items:
        if isinstance(item, Asset):
            raise ValidationError(field, f"expected {plural} (strings), got an Asset (pass asset.id)")
        if not isinstance(item, str):
            got = f"{type(item).__name__} {item!r:.60}"
            raise ValidationError(field, f"expected {plural} (strings), got {got}")
    return items


def _check_use(action: object, actor: object) -> None:
    """What a use is recorded as: checked before anything is read, deleted or queued."""
    if not isinstance(action, str) or not action:
        got = f"{type(action).__name__} {action!r:.60}"
        raise ValidationError("action", f"expected a non-empty string, got {got}")
    if actor is not None and not isinstance(actor, str):
        raise ValidationError("actor", f"expected a string or None, got {type(actor).__name__}")


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _chunks(items: Sequence[str], size: int) -> Iterator[tuple[str, ...]]:
    for start in range(0, len(items), size):
        yield tuple(items[start : start + size])


def _unique_names(labels: Sequence[str], *, reserved: Iterable[str] = ()) -> list[str]:
    """File names for labels, ``name (2).png`` for the second of a name (compared without case, as on
    macOS and Windows), never one of ``reserved``."""
    used = {name.lower() for name in reserved}
    names = []
    for label in labels:
        stem, dot, suffix = label.rpartition(".")
        if not dot or not stem:
            stem, suffix = label, ""
        name, n = label, 1
        while name.lower() in used:
            n += 1
            name = f"{stem} ({n}).{suffix}" if suffix else f"{stem} ({n})"
        used.add(name.lower())
        names.append(name)
    return names


@contextlib.contextmanager
def _atomic_write(path: Path) -> Iterator[IO[bytes]]:
    # Not named after the file: a label near the file system's 255-byte limit leaves no room for more.
    tmp = path.with_name(f".assetry-{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["DeleteReport", "IngestReport", "Store", "iter_files", "new_id", "open", "own_directories"]


def _backend_options(options_type: type[Any] | None, raw: Mapping[str, Any], key: str, config: Config) -> Any:
    """Validate a backend's options table (``raw``, at ``key``) with the backend's own attrs class; errors
    name the key and what set it (the file, an environment variable: ``config.blame``)."""
    if options_type is None:
        return dict(raw)
    try:
        return _convert.structure(dict(raw), options_type, error=ConfigError, prefix=key)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.reason, source=config.blame(exc.field)) from None
