"""`FsspecBlobStore`: content-addressed blobs on any fsspec filesystem (local disk by default).

Layout under the root: ``blobs/<algo>/<hex[0:2]>/<hex[2:4]>/<hex>`` for published blobs and ``tmp/`` for
writes in progress. A blob appears at its key only once it is complete: on local disk through a temporary
file in ``tmp/`` renamed into place (same filesystem, so the rename is atomic), on other filesystems through
a temporary key moved into place (object stores publish a copy atomically).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from assetry.backends import BlobStore, StorageSpec
from assetry.content import Content
from assetry.digests import CHUNK_SIZE, digest_stream, format_digest, new_hasher, split_digest
from assetry.errors import BlobNotFound, ConfigError, ContentMismatch, NotSupported, ValidationError
from assetry.model import StoredBlob, check_digest

logger = logging.getLogger(__name__)

BLOBS = "blobs"
TMP = "tmp"
_TMP_SUFFIX = ".tmp"
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_USERINFO = re.compile(r"^[^/@]*@")


class FsspecBlobStore(BlobStore):
    """Blobs stored once under their digest on an fsspec filesystem.

    On local disk, published blobs are made read-only: `local_path` hands out the real file, and a tool
    that edits it in place would otherwise silently corrupt every asset sharing the blob.
    """

    def __init__(self, fs: Any, root: str, *, algorithm: str) -> None:
        new_hasher(algorithm)  # fails early, naming storage.digest, for an unknown algorithm
        self.fs = fs
        self.algorithm = algorithm
        self.is_local = isinstance(fs, LocalFileSystem)
        # Keys are built as f"{root}/...", so the filesystem root "/" becomes "".
        self.root = root.rstrip("/")
        self._dirs_ready = False
        if self.is_local and self.root and os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ConfigError("storage.url", f"{self.describe()} exists and is not a directory")

    @classmethod
    def from_spec(cls, spec: StorageSpec) -> FsspecBlobStore:
        """Build a store from ``[storage]``: ``url`` (a path or an fsspec URL), ``digest`` (the algorithm)
        and ``options`` (a table of fsspec storage options, such as ``anon`` or ``client_kwargs``)."""
        if not spec.url:
            raise ConfigError("storage.url", "must not be empty")
        options = spec.options if spec.options is not None else {}
        if not isinstance(options, Mapping):
            raise ConfigError("storage.options", "must be a table of fsspec storage options")
        try:
            fs, root = fsspec.url_to_fs(spec.url, **options)
        except ImportError as exc:
            # fsspec's message names the missing package ("Install s3fs to access S3").
            hint = "; install assetry[s3]" if spec.url.startswith(("s3://", "s3a://")) else ""
            raise ConfigError("storage.url", f"{exc}{hint}") from None
        except ValueError as exc:
            raise ConfigError("storage.url", str(exc)) from None
        except TypeError as exc:
            raise ConfigError("storage.options", str(exc)) from None
        return cls(fs, root, algorithm=spec.digest)

    # -- layout ---------------------------------------------------------------------------------------

    def _key(self, digest: str) -> str:
        algorithm, hexdigest = split_digest(digest)
        return f"{self.root}/{BLOBS}/{algorithm}/{hexdigest[0:2]}/{hexdigest[2:4]}/{hexdigest}"

    def _tmp_dir(self) -> str:
        return f"{self.root}/{TMP}"

    def _new_tmp_name(self) -> str:
        return f"{self._tmp_dir()}/{uuid.uuid4().hex}{_TMP_SUFFIX}"

    def _ensure_dirs(self) -> None:
        if self._dirs_ready:
            return
        if self.is_local:
            os.makedirs(self._tmp_dir(), exist_ok=True)
            os.makedirs(f"{self.root}/{BLOBS}", exist_ok=True)
        self._dirs_ready = True

    # -- writing --------------------------------------------------------------------------------------

    def put(self, content: Content) -> StoredBlob:
        """Store content under its digest, unless it is already stored (then write nothing).

        Memory stays bounded by `CHUNK_SIZE` whatever the size. A source file that changes while it is
        read raises `ContentMismatch` and nothing is published.
        """
        self._ensure_dirs()
        try:
            if not self.is_local:
                result = self._put_remote(content)
            elif content.local_path is not None:
                result = self._put_local_file(content, content.local_path)
            else:
                result = self._put_local_stream(content)
        except OSError:
            # A source file deleted or rewritten meanwhile becomes a ContentMismatch naming the file
            # (not an OSError carrying its full path).
            content.check_unchanged()
            raise
        if result.written:
            logger.debug("stored blob %s (%d bytes)", result.digest, result.size)
        else:
            logger.debug("blob %s already stored", result.digest)
        return result

    def _put_local_file(self, content: Content, source: os.PathLike[str]) -> StoredBlob:
        # Hash before copying: re-ingesting a duplicate then costs one read and no write.
        with open(source, "rb") as reader:
            digest, size = digest_stream(reader, self.algorithm)
        _check_source(content, size)
        final = self._key(digest)
        if os.path.exists(final):
            return StoredBlob(digest=digest, size=size, written=False)
        tmp = self._create_local_tmp()
        try:
            # copyfile lets the OS move the bytes (sendfile / copy_file_range), never through Python.
            shutil.copyfile(source, tmp)
            _check_source(content, size)
            copied = os.stat(tmp).st_size
            if copied != size:
                raise ContentMismatch(f"{content.name}: copied {copied} bytes, hashed {size}; try again")
            return self._publish_local(tmp, final, digest, size)
        except BaseException:
            _remove_quietly(tmp)
            raise

    def _put_local_stream(self, content: Content) -> StoredBlob:
        hasher = new_hasher(self.algorithm)
        size = 0
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        tmp = self._create_local_tmp()
        try:
            with content.open() as reader, open(tmp, "wb") as writer:
                while n := reader.readinto(view):  # type: ignore[attr-defined]
                    hasher.update(view[:n])
                    writer.write(view[:n])
                    size += n
            _check_source(content, size)
            digest = format_digest(self.algorithm, hasher.hexdigest())
            return self._publish_local(tmp, self._key(digest), digest, size)
        except BaseException:
            _remove_quietly(tmp)
            raise

    def _create_local_tmp(self) -> str:
        tmp = self._new_tmp_name()
        # Created with 0o666 so the process umask decides who may read the blob, as for any new file
        # (mkstemp would force 0o600).
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileNotFoundError:  # the store directory was removed since this object created it
            os.makedirs(self._tmp_dir(), exist_ok=True)
            os.close(os.open(tmp, flags, 0o666))
        return tmp

    def _publish_local(self, tmp: str, final: str, digest: str, size: int) -> StoredBlob:
        if os.path.exists(final):
            _remove_quietly(tmp)
            return StoredBlob(digest=digest, size=size, written=False)
        os.chmod(tmp, stat.S_IMODE(os.stat(tmp).st_mode) & ~_WRITE_BITS)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError:
            # A concurrent writer published the same digest first (Windows refuses to replace it).
            if os.path.exists(final):
                _remove_quietly(tmp)
                return StoredBlob(digest=digest, size=size, written=False)
            raise
        return StoredBlob(digest=digest, size=size, written=True)

    def _put_remote(self, content: Content) -> StoredBlob:
        # Content is always local (bytes, a spool or a file), so hashing it first is cheap next to an
        # upload and lets a duplicate skip the upload entirely.
        with content.open() as reader:
            digest, size = digest_stream(reader, self.algorithm)
        _check_source(content, size)
        final = self._key(digest)
        if self.fs.isfile(final):
            return StoredBlob(digest=digest, size=size, written=False)
        tmp = self._new_tmp_name()
        try:
            hasher = new_hasher(self.algorithm)
            uploaded = 0
            with content.open() as reader, self.fs.open(tmp, "wb") as writer:
                # Fresh bytes per chunk: a filesystem may keep a reference to what it was given.
                while chunk := reader.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    writer.write(chunk)
                    uploaded += len(chunk)
            _check_source(content, uploaded)
            if format_digest(self.algorithm, hasher.hexdigest()) != digest or uploaded != size:
                raise ContentMismatch(f"{content.name}: the content changed while it was being stored")
            if self.fs.isfile(final):
                self._remove_remote_quietly(tmp)
                return StoredBlob(digest=digest, size=size, written=False)
            self.fs.mv(tmp, final)
        except BaseException:
            self._remove_remote_quietly(tmp)
            raise
        return StoredBlob(digest=digest, size=size, written=True)

    def _remove_remote_quietly(self, key: str) -> None:
        try:
            self.fs.rm_file(key)
        except FileNotFoundError:
            pass
        except Exception:  # cleanup must not hide the original error; sweep_temp retries later
            logger.warning("could not remove a temporary upload in %s", self.describe(), exc_info=True)

    # -- reading --------------------------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        key = self._key(digest)
        if self.is_local:
            return os.path.isfile(key)
        return bool(self.fs.isfile(key))

    def open(self, digest: str) -> BinaryIO:
        key = self._key(digest)
        try:
            if self.is_local:
                return open(key, "rb")
            return self.fs.open(key, "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def size(self, digest: str) -> int:
        key = self._key(digest)
        try:
            if self.is_local:
                return os.stat(key).st_size
            return int(self.fs.info(key)["size"])
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def delete(self, digest: str) -> None:
        key = self._key(digest)
        if not self.is_local:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(key)
            return
        try:
            os.unlink(key)
        except FileNotFoundError:
            pass
        except PermissionError:
            # Windows refuses to unlink a read-only file; POSIX only needs the directory writable.
            if not os.path.exists(key):
                return
            os.chmod(key, stat.S_IMODE(os.stat(key).st_mode) | stat.S_IWUSR)
            os.unlink(key)

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Every published (digest, size); temporary files and anything off the layout are skipped."""
        if self.is_local:
            yield from self._iter_local_blobs()
            return
        base = f"{self.root}/{BLOBS}"
        for path, info in self.fs.find(base, detail=True).items():
            relative = self.fs._strip_protocol(path)[len(base) :].strip("/")
            digest = _digest_of(relative.split("/"))
            if digest is not None and info.get("type", "file") == "file":
                yield digest, int(info["size"])

    def _iter_local_blobs(self) -> Iterator[tuple[str, int]]:
        # Walks exactly three directory levels so a stray deep tree cannot make the sweep wander.
        for algo in _scandir(f"{self.root}/{BLOBS}", dirs=True):
            for first in _scandir(algo.path, dirs=True):
                for second in _scandir(first.path, dirs=True):
                    for entry in _scandir(second.path, dirs=False):
                        digest = _digest_of([algo.name, first.name, second.name, entry.name])
                        if digest is None:
                            continue
                        try:
                            yield digest, entry.stat(follow_symlinks=False).st_size
                        except FileNotFoundError:  # deleted while we walked
                            continue

    def local_path(self, digest: str) -> str | None:
        """The blob's file on local disk (read-only; do not modify it), or None for remote storage.
        Raises `BlobNotFound` for a missing blob on local disk."""
        if not self.is_local:
            return None
        key = self._key(digest)
        if not os.path.isfile(key):
            raise BlobNotFound(digest)
        return key

    def signed_url(self, digest: str, expires: timedelta) -> str:
        """A URL valid for ``expires`` on filesystems that sign URLs (S3, GCS, Azure). The blob's
        existence is not checked: the catalog only refers to stored blobs."""
        seconds = int(expires.total_seconds())
        if seconds <= 0:
            raise ValidationError("expires", f"must be at least one second, got {expires}")
        key = self._key(digest)
        if self.is_local:
            raise NotSupported(f"the {self.describe()} storage cannot sign download URLs")
        try:
            return str(self.fs.sign(key, expiration=seconds))
        except NotImplementedError:
            raise NotSupported(f"the {self.describe()} storage cannot sign download URLs") from None

    def describe(self) -> str:
        if self.is_local:
            name = os.path.basename(self.root.rstrip("/"))
            return f"local:…/{name}" if name else "local:/"
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        location = _USERINFO.sub("", self.root.lstrip("/")).split("?", 1)[0]
        return f"{protocol}://{location}"

    # -- maintenance ----------------------------------------------------------------------------------

    def sweep_temp(self, older_than: timedelta) -> int:
        """Remove temporary files left by interrupted writes, if last modified more than ``older_than``
        ago (keep it well above the longest upload, so live writes are spared). Returns how many."""
        if older_than < timedelta(0):
            raise ValidationError("older_than", f"must not be negative, got {older_than}")
        cutoff = datetime.now(UTC) - older_than
        removed = 0
        if self.is_local:
            try:
                entries = list(os.scandir(self._tmp_dir()))
            except FileNotFoundError:
                return 0
            for entry in entries:
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    modified = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
                    if modified <= cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:  # finished or swept by another process meanwhile
                    continue
        else:
            for path in self.fs.find(self._tmp_dir()):
                try:
                    modified = self.fs.modified(path)
                except (NotImplementedError, FileNotFoundError):
                    continue
                if modified.tzinfo is None:
                    modified = modified.replace(tzinfo=UTC)
                if modified <= cutoff:
                    self._remove_remote_quietly(path)
                    removed += 1
        if removed:
            logger.info("removed %d stale temporary files from %s", removed, self.describe())
        return removed

    def close(self) -> None:
        # fsspec caches and shares filesystem instances between users; closing one here would break them.
        pass

    def __repr__(self) -> str:
        return f"<FsspecBlobStore {self.describe()} {self.algorithm}>"


def _check_source(content: Content, size: int) -> None:
    content.check_unchanged()
    if size != content.size:
        raise ContentMismatch(f"{content.name}: read {size} bytes, expected {content.size}; try again")


def _digest_of(parts: list[str]) -> str | None:
    """The digest a blob key names (``[algo, d0d1, d2d3, hex]``), or None if it is off the layout."""
    if len(parts) != 4:
        return None
    algorithm, first, second, hexdigest = parts
    if hexdigest[0:2] != first or hexdigest[2:4] != second:
        return None
    digest = format_digest(algorithm, hexdigest)
    try:
        check_digest(digest)
    except ValidationError:
        return None
    return digest


def _scandir(path: str, *, dirs: bool) -> list[os.DirEntry[str]]:
    """The subdirectories (or regular files) of a directory; empty if it is missing. A shard directory
    holds a few hundred entries at most, so listing it whole is cheap and closes it at once."""
    try:
        with os.scandir(path) as entries:
            if dirs:
                return [entry for entry in entries if entry.is_dir(follow_symlinks=False)]
            return [entry for entry in entries if entry.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
