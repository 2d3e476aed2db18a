"""assetry-fsspec: the blob store contract on local disk and fsspec's memory filesystem, plus what is
specific to this backend (atomic publish, changed sources, bounded memory, layout, temp files)."""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import stat
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import pluggy
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assetry.hookspecs
from assetry._testing.storage import BlobStoreContract
from assetry.backends import BlobStore, StorageSpec
from assetry.content import HEAD_SIZE, Content
from assetry.digests import CHUNK_SIZE, digest_bytes, digest_stream, split_digest
from assetry.errors import (
    BackendError,
    BlobNotFound,
    ConfigError,
    ContentMismatch,
    NotSupported,
    ValidationError,
)
from assetry_fsspec import plugin, storage
from assetry_fsspec.storage import FsspecBlobStore
from tests.instrumented import FlippingContent, InstrumentedContent

MiB = 1024 * 1024


# -- fixtures and helpers ---------------------------------------------------------------------------------


def local_store(root: Path, algorithm: str = "blake3") -> FsspecBlobStore:
    return FsspecBlobStore.from_spec(StorageSpec(url=str(root), digest=algorithm))


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A fresh location on fsspec's process-wide memory filesystem, removed after the test."""
    prefix = f"assetry-test-{uuid.uuid4().hex}"
    yield f"memory://{prefix}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{prefix}"):
        fs.rm(f"/{prefix}", recursive=True)


def memory_files(url: str) -> dict[str, bytes]:
    fs, root = fsspec.url_to_fs(url)
    return {path[len(root) + 1 :]: fs.cat_file(path) for path in fs.find(root)}


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["local", "memory"])
def store_and_files(
    request: pytest.FixtureRequest, tmp_path: Path, memory_url: str
) -> tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]]:
    """A blake3 store and a function listing every file under its root (relative path -> bytes)."""
    if request.param == "local":
        root = tmp_path / "store"
        return local_store(root), lambda: local_files(root) if root.exists() else {}
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    return store, lambda: memory_files(memory_url)


class _GeneratedStream(io.RawIOBase):
    """`size` bytes produced on demand, never held whole in memory (a generator's output, a download)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = os.urandom(CHUNK_SIZE + 17)
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left, CHUNK_SIZE)
        start = self._offset % 17
        buffer[:n] = self._block[start : start + n]
        self._offset += 1
        self._left -= n
        return n


def _fail() -> None:
    raise OSError("simulated read error")


# -- the contract ---------------------------------------------------------------------------------------


class TestLocal(BlobStoreContract):
    @pytest.fixture
    def make_blob_store(self, tmp_path: Path) -> Callable[[str], BlobStore]:
        return lambda algorithm: local_store(tmp_path / f"store-{algorithm}", algorithm)


class TestMemory(BlobStoreContract):
    @pytest.fixture
    def make_blob_store(self, memory_url: str) -> Callable[[str], BlobStore]:
        return lambda algorithm: FsspecBlobStore.from_spec(
            StorageSpec(url=f"{memory_url}/{algorithm}", digest=algorithm)
        )


# -- construction -----------------------------------------------------------------------------------------


def test_plain_path_and_file_url_are_local_disk(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path / 'b'}"):
        store = FsspecBlobStore.from_spec(StorageSpec(url=url, digest="blake3", options=None))
        assert store.is_local
        digest = store.put(Content.from_bytes(b"x")).digest
        assert store.local_path(digest) is not None


def test_options_are_passed_to_fsspec(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3", options={"skip": 1}))
    assert isinstance(store.fs, MemoryFileSystem)
    assert store.fs.storage_options == {"skip": 1}


def test_root_is_created_on_first_put_only(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    store = local_store(root)
    assert not store.has(digest_bytes(b"x"))
    assert list(store.iter_blobs()) == []
    assert store.sweep_temp(timedelta(0)) == 0
    assert not root.exists(), "reads must not create the store"
    store.put(Content.from_bytes(b"x"))
    assert (root / "blobs").is_dir()
    assert (root / "tmp").is_dir()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (StorageSpec(url="", digest="blake3"), "storage.url"),
        (StorageSpec(url="nosuchprotocol://bucket/x", digest="blake3"), "storage.url"),
        (StorageSpec(url="memory://x", digest="md5"), "storage.digest"),
        (StorageSpec(url="memory://x", digest="blake3", options=["anon"]), "storage.options"),
    ],
)
def test_bad_spec_is_a_config_error(spec: StorageSpec, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FsspecBlobStore.from_spec(spec)
    assert info.value.field == field


def test_root_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("not a directory")
    with pytest.raises(ConfigError, match="not a directory") as info:
        local_store(tmp_path / "store")
    assert info.value.field == "storage.url"
    assert str(tmp_path) not in str(info.value)


def test_plugin_registers_the_backend(tmp_path: Path) -> None:
    pm = pluggy.PluginManager("assetry")
    pm.add_hookspecs(assetry.hookspecs)
    pm.register(plugin)
    pm.check_pending()
    backends = [b for result in pm.hook.assetry_storage_backends() for b in result]
    assert [b.name for b in backends] == ["fsspec"]
    assert backends[0].options_type is None
    assert backends[0].description
    store = backends[0].factory(StorageSpec(url=str(tmp_path), digest="sha256"))
    assert isinstance(store, FsspecBlobStore)
    assert store.put(Content.from_bytes(b"x")).digest == digest_bytes(b"x", "sha256")


# -- layout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_blob_key_layout(tmp_path: Path, memory_url: str, algorithm: str) -> None:
    data = b"where does it go"
    hexdigest = digest_bytes(data, algorithm).partition(":")[2]
    expected = f"blobs/{algorithm}/{hexdigest[0:2]}/{hexdigest[2:4]}/{hexdigest}"

    local_store(tmp_path, algorithm).put(Content.from_bytes(data))
    assert local_files(tmp_path) == {expected: data}

    FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest=algorithm)).put(Content.from_bytes(data))
    assert memory_files(memory_url) == {expected: data}


def test_iter_blobs_ignores_temp_and_stray_files(
    store_and_files: tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]],
) -> None:
    store, _ = store_and_files
    stored = store.put(Content.from_bytes(b"the only blob"))
    _, hexdigest = split_digest(stored.digest)
    other = digest_bytes(b"other").partition(":")[2]
    strays = [
        "tmp/0123.tmp",
        f"tmp/{hexdigest}",
        "blobs/README",
        f"blobs/blake3/{hexdigest}",
        f"blobs/blake3/{other[0:2]}/{other[2:4]}/{other}.tmp",
        f"blobs/blake3/{other[0:2]}/{other[2:4]}/nothex",
        f"blobs/blake3/zz/{other[2:4]}/{other}",  # wrong shard
        f"blobs/blake3/{other[2:4]}/{other[0:2]}/{other}",  # shards swapped
        f"blobs/blake3/{other[0:2]}/{other[2:4]}/deeper/{other}",
        f"blobs/BLAKE3/{other[0:2]}/{other[2:4]}/{other}",
    ]
    for stray in strays:
        key = f"{store.root}/{stray}"
        store.fs.makedirs(store.fs._parent(key), exist_ok=True)
        store.fs.pipe_file(key, b"stray")
    assert list(store.iter_blobs()) == [(stored.digest, stored.size)]


# -- atomic publish ---------------------------------------------------------------------------------------


def test_no_partial_blob_is_ever_visible(
    store_and_files: tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]],
) -> None:
    store, files = store_and_files
    data = os.urandom(3 * CHUNK_SIZE)
    digest = digest_bytes(data)
    seen: list[tuple[bool, list[str]]] = []

    def look() -> None:
        seen.append((store.has(digest), sorted(files())))

    # Local disk writes in one pass; other filesystems hash first, then upload in a second pass.
    content = InstrumentedContent(data, look, on_open=1 if store.is_local else 2)
    assert store.put(content).written
    [(visible, paths_mid_write)] = seen
    assert not visible
    assert [p.split("/")[0] for p in paths_mid_write] == ["tmp"], "the bytes in flight sit under tmp/"
    assert store.has(digest)
    assert sorted(files()) == [store._key(digest)[len(store.root) + 1 :]]


def test_failed_read_leaves_no_blob_and_no_temp_file(
    store_and_files: tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]],
) -> None:
    store, files = store_and_files
    data = os.urandom(3 * CHUNK_SIZE)
    with pytest.raises(OSError, match="simulated read error"):
        store.put(InstrumentedContent(data, _fail))
    assert not store.has(digest_bytes(data))
    assert files() == {}
    assert list(store.iter_blobs()) == []
    assert store.put(Content.from_bytes(data)).written, "the store still works afterwards"


def test_failed_upload_leaves_no_blob_and_no_temp_key(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    data = os.urandom(3 * CHUNK_SIZE)
    # The first read (hashing) succeeds; the second (the upload) breaks halfway.
    content = InstrumentedContent(data, _fail, on_open=2)
    with pytest.raises(OSError, match="simulated read error"):
        store.put(content)
    assert content.opens == 2
    assert not store.has(digest_bytes(data))
    assert memory_files(memory_url) == {}


def test_interrupt_leaves_no_temp_file(tmp_path: Path) -> None:
    store = local_store(tmp_path)

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put(InstrumentedContent(os.urandom(2 * CHUNK_SIZE), interrupt))
    assert local_files(tmp_path) == {}


def test_concurrent_puts_of_the_same_content(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    data = os.urandom(2 * CHUNK_SIZE)
    results = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(store.put(Content.from_bytes(data)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {r.digest for r in results} == {digest_bytes(data)}
    assert any(r.written for r in results)
    assert list(store.iter_blobs()) == [(digest_bytes(data), len(data))]
    assert not any((tmp_path / "tmp").iterdir())
    with store.open(digest_bytes(data)) as f:
        assert f.read() == data


# -- sources that change ----------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["append", "delete"])
def test_source_changed_before_put(
    store_and_files: tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]], tmp_path: Path, change: str
) -> None:
    store, files = store_and_files
    source = tmp_path / "render.png"
    source.write_bytes(b"first frame")
    content = Content.from_path(source)
    if change == "append":
        with source.open("ab") as f:
            f.write(b" and then some")
    else:
        source.unlink()
    with pytest.raises(ContentMismatch, match=r"render\.png") as info:
        store.put(content)
    assert str(tmp_path) not in str(info.value)
    assert files() == {}


@pytest.mark.parametrize("change", ["grow", "rewrite"])
def test_source_changed_during_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    store = local_store(tmp_path / "store")
    source = tmp_path / "render.png"
    source.write_bytes(os.urandom(100_000))
    content = Content.from_path(source)
    real_copy = storage._copy_file_to

    def copy_while_the_generator_still_writes(src: Any, dst: int) -> int:
        if change == "grow":
            with open(src, "ab") as f:
                f.write(b"more pixels")
        else:  # same size, new bytes: only the modification time tells
            mtime = os.stat(src).st_mtime_ns
            Path(src).write_bytes(os.urandom(100_000))
            os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
        return real_copy(src, dst)

    monkeypatch.setattr("assetry_fsspec.storage._copy_file_to", copy_while_the_generator_still_writes)
    monkeypatch.setattr("assetry_fsspec.storage.LOCAL_SMALL_FILE", 0)  # the copy path of large files
    with pytest.raises(ContentMismatch, match=r"render\.png"):
        store.put(content)
    assert local_files(tmp_path / "store") == {}


def test_source_changed_between_hash_and_upload(tmp_path: Path, memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    data = os.urandom(2 * CHUNK_SIZE)
    with pytest.raises(ContentMismatch):
        store.put(FlippingContent(data))
    assert memory_files(memory_url) == {}


# -- local disk specifics ---------------------------------------------------------------------------------


def test_store_directory_removed_while_open(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    store.put(Content.from_bytes(b"first"))
    shutil.rmtree(tmp_path / "store")
    stored = store.put(Content.from_bytes(b"second"))
    assert store.has(stored.digest)


@pytest.mark.parametrize("path", ["small", "copy"])
def test_duplicate_file_is_not_copied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    if path == "copy":  # large files are hashed while the OS copies them; small ones read once
        monkeypatch.setattr("assetry_fsspec.storage.LOCAL_SMALL_FILE", 0)
    store = local_store(tmp_path / "store")
    source = tmp_path / "a.bin"
    source.write_bytes(os.urandom(50_000))
    copies = []
    real_copy = storage._copy_file_to

    def counting_copy(src: Any, dst: int) -> int:
        copies.append(src)
        return real_copy(src, dst)

    monkeypatch.setattr("assetry_fsspec.storage._copy_file_to", counting_copy)
    first = store.put(Content.from_path(source))
    blob = Path(store.local_path(first.digest) or "")
    before = blob.stat()
    second = store.put(Content.from_path(source))
    assert second.written is False
    # Small files are hashed before anything is written; large ones are hashed while a temporary copy is
    # made, which is dropped once the hash shows a duplicate (the published blob is never rewritten).
    assert len(copies) == (2 if path == "copy" else 0)
    after = blob.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def _unsupported(source: int, target: int) -> int:
    raise OSError(errno.EXDEV, "cross-device link")


def _copies_nothing(source: int, target: int) -> int:
    return 0  # what copy_file_range answers on some filesystems instead of an error


@pytest.mark.parametrize(
    "copies",
    [
        pytest.param("kernel", id="copy_file_range"),
        pytest.param([_unsupported, storage._sendfile], id="sendfile-after-EXDEV"),
        pytest.param([_copies_nothing, _unsupported], id="buffer-after-silent-zero"),
        pytest.param([], id="buffer"),
    ],
)
def test_large_file_copy_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: Any) -> None:
    if copies != "kernel":
        monkeypatch.setattr("assetry_fsspec.storage._KERNEL_COPIES", copies)
    monkeypatch.setattr("assetry_fsspec.storage.LOCAL_SMALL_FILE", 0)
    store = local_store(tmp_path / "store")
    data = os.urandom(3 * CHUNK_SIZE + 17)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    stored = store.put(Content.from_path(source))
    assert stored.digest == digest_bytes(data)
    assert stored.size == len(data)
    blob = Path(store.local_path(stored.digest) or "")
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) & 0o222 == 0, "published read-only"
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_large_file_copy_error_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(source: int, target: int) -> int:
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr("assetry_fsspec.storage._KERNEL_COPIES", [failing])
    monkeypatch.setattr("assetry_fsspec.storage.LOCAL_SMALL_FILE", 0)
    store = local_store(tmp_path / "store")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(100_000))
    with pytest.raises(OSError, match="input/output"):
        store.put(Content.from_path(source))
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


@pytest.mark.parametrize("answer", [errno.ENOSPC, errno.EOPNOTSUPP])
def test_large_file_preallocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: int) -> None:
    """A full disk is reported before anything is copied; a filesystem without fallocate just copies."""
    copies = []
    real_copy = storage._copy_file_to

    def counting_copy(src: Any, dst: int) -> int:
        copies.append(src)
        return real_copy(src, dst)

    monkeypatch.setattr("assetry_fsspec.storage._FALLOCATE", lambda fd, size: answer)
    monkeypatch.setattr("assetry_fsspec.storage._copy_file_to", counting_copy)
    monkeypatch.setattr("assetry_fsspec.storage.LOCAL_SMALL_FILE", 0)
    store = local_store(tmp_path / "store")
    data = os.urandom(100_000)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    if answer == errno.ENOSPC:
        with pytest.raises(OSError, match="No space left"):
            store.put(Content.from_path(source))
        assert copies == []
        assert local_files(tmp_path / "store") == {}
    else:
        stored = store.put(Content.from_path(source))
        assert Path(store.local_path(stored.digest) or "").read_bytes() == data


def test_local_path_is_the_read_only_blob(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    data = os.urandom(1000)
    digest = store.put(Content.from_bytes(data)).digest
    path = store.local_path(digest)
    assert path is not None
    assert Path(path).read_bytes() == data
    assert Path(path).resolve().is_relative_to(tmp_path.resolve())
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o222 == 0, "blobs are read-only"
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o400, "and readable"
    store.delete(digest)
    assert not Path(path).exists()
    with pytest.raises(BlobNotFound):
        store.local_path(digest)


def test_local_path_is_none_off_local_disk(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    digest = store.put(Content.from_bytes(b"in memory")).digest
    assert store.local_path(digest) is None


def test_describe_hides_local_path(tmp_path: Path) -> None:
    store = local_store(tmp_path / "my-assets")
    assert store.describe() == "local:…/my-assets"
    assert str(tmp_path) not in store.describe()
    assert str(tmp_path) not in repr(store)


def test_describe_remote(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=f"{memory_url}/prefix", digest="blake3"))
    assert store.describe() == f"{memory_url}/prefix"


def test_describe_drops_credentials_in_the_url() -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url="memory://key:s3cr3t@bucket/prefix", digest="blake3"))
    assert "s3cr3t" not in store.describe()
    assert store.describe() == "memory://bucket/prefix"


def test_log_names_digests_not_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = local_store(tmp_path / "store")
    source = tmp_path / "secret-project" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(b"logged")
    with caplog.at_level(logging.DEBUG, logger="assetry_fsspec"):
        first = store.put(Content.from_path(source))
        store.put(Content.from_path(source))
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("assetry_fsspec")]
    assert len(messages) == 2
    assert all(first.digest in m for m in messages)
    assert not any(str(tmp_path) in m or "secret-project" in m for m in messages)


# -- signed URLs ------------------------------------------------------------------------------------------


class _SigningMemoryFileSystem(MemoryFileSystem):  # type: ignore[misc]
    """The memory filesystem with an object-store style `sign` (S3, GCS and Azure implement it)."""

    protocol = "signingmemory"

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        return f"https://storage.example/{path.lstrip('/')}?expires={expiration}"


def test_signed_url_not_supported_on_local_disk_or_memory(tmp_path: Path, memory_url: str) -> None:
    for store in (
        local_store(tmp_path),
        FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3")),
    ):
        digest = store.put(Content.from_bytes(b"x")).digest
        with pytest.raises(NotSupported, match="cannot sign"):
            store.signed_url(digest, timedelta(minutes=5))


def test_signed_url_uses_fsspec_sign(memory_url: str) -> None:
    root = memory_url.removeprefix("memory://")
    store = FsspecBlobStore(_SigningMemoryFileSystem(), root, algorithm="blake3")
    digest = store.put(Content.from_bytes(b"share me")).digest
    _, hexdigest = split_digest(digest)
    url = store.signed_url(digest, timedelta(minutes=15))
    assert url == (
        f"https://storage.example/{root}/blobs/blake3/{hexdigest[0:2]}/{hexdigest[2:4]}/{hexdigest}"
        "?expires=900"
    )
    with pytest.raises(ValidationError) as info:
        store.signed_url(digest, timedelta(0))
    assert info.value.field == "expires"


# -- temporary files --------------------------------------------------------------------------------------


def test_sweep_temp_local(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    digest = store.put(Content.from_bytes(b"a blob")).digest
    stale = [tmp_path / "tmp" / f"stale-{i}.tmp" for i in range(3)]
    fresh = tmp_path / "tmp" / "in-progress.tmp"
    for path in [*stale, fresh]:
        path.write_bytes(b"partial")
    two_hours_ago = fresh.stat().st_mtime - 7200
    for path in stale:
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert store.sweep_temp(timedelta(hours=1)) == 3
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == ["in-progress.tmp"]
    assert store.sweep_temp(timedelta(hours=1)) == 0
    assert store.sweep_temp(timedelta(0)) == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    assert store.has(digest), "blobs are never swept"
    with pytest.raises(ValidationError) as info:
        store.sweep_temp(timedelta(seconds=-1))
    assert info.value.field == "older_than"


def test_sweep_temp_remote(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    digest = store.put(Content.from_bytes(b"a blob")).digest
    store.fs.pipe_file(f"{store.root}/tmp/leftover.tmp", b"partial")
    assert store.sweep_temp(timedelta(hours=1)) == 0
    assert store.sweep_temp(timedelta(0)) == 1
    assert list(memory_files(memory_url)) == [store._key(digest)[len(store.root) + 1 :]]


# -- bounded memory ---------------------------------------------------------------------------------------


def _peak_python_memory(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("source", ["stream", "path"])
def test_large_content_is_stored_with_bounded_memory(tmp_path: Path, source: str) -> None:
    size = 64 * MiB + 123
    store = local_store(tmp_path / "store")
    if source == "stream":
        content = Content.from_stream(_GeneratedStream(size))  # type: ignore[arg-type]
    else:
        with open(tmp_path / "big.bin", "wb") as f:
            shutil.copyfileobj(_GeneratedStream(size), f)
        content = Content.from_path(tmp_path / "big.bin")
    results = []
    peak = _peak_python_memory(lambda: results.append(store.put(content)))
    with content.open() as reader:
        expected, _ = digest_stream(reader)
    content.close()
    assert results[0].digest == expected
    assert results[0].size == size
    assert peak < 4 * CHUNK_SIZE, f"peak Python memory {peak / MiB:.1f} MiB for a 64 MiB blob"


# -- property: I1 -----------------------------------------------------------------------------------------

_contents = st.one_of(
    st.binary(max_size=4096),
    st.builds(
        lambda n, byte: bytes([byte]) * n, st.integers(CHUNK_SIZE - 3, CHUNK_SIZE + 3), st.integers(0, 255)
    ),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_contents, source=st.sampled_from(["bytes", "stream", "path"]))
def test_put_then_read_returns_the_same_bytes(
    store_and_files: tuple[FsspecBlobStore, Callable[[], dict[str, bytes]]],
    tmp_path: Path,
    data: bytes,
    source: str,
) -> None:
    store, _ = store_and_files
    if source == "bytes":
        content = Content.from_bytes(data)
    elif source == "stream":
        content = Content.from_stream(io.BytesIO(data))
    else:
        path = tmp_path / f"source-{uuid.uuid4().hex}"
        path.write_bytes(data)
        content = Content.from_path(path)
    stored = store.put(content)
    assert stored.digest == digest_bytes(data)
    assert stored.size == len(data)
    with store.open(stored.digest) as reader:
        read = reader.read()
    assert read == data
    assert digest_bytes(read) == stored.digest
    assert store.size(stored.digest) == len(data)


def test_a_small_local_put_hands_its_head_to_sniffing(tmp_path: Path) -> None:
    """The put has read the whole small file: the content's head comes from it, not from a second read."""
    source = tmp_path / "small.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    content = Content.from_path(source)
    local_store(tmp_path / "store").put(content)
    source.unlink()  # a second read would now fail
    assert content.head() == data[:HEAD_SIZE]
    assert content.head(10) == data[:10]
    content.forget_head()
    with pytest.raises(FileNotFoundError):
        content.head()  # forgotten: read from the source again


def test_local_lock_is_shared_by_ingests_and_exclusive_for_deletion(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    acquired = threading.Event()

    def take(exclusive: bool) -> None:
        with store.lock(exclusive=exclusive):
            acquired.set()

    with store.lock(exclusive=False):
        other_ingest = threading.Thread(target=take, args=(False,))
        other_ingest.start()
        other_ingest.join(timeout=30)
        assert acquired.is_set()  # ingests do not wait for each other
        acquired.clear()
        deletion = threading.Thread(target=take, args=(True,))
        deletion.start()
        deletion.join(timeout=0.5)
        assert not acquired.is_set()  # a deletion waits for the ingest
    deletion.join(timeout=30)
    assert acquired.is_set()
    assert (tmp_path / "store" / "store.lock").is_file()


def test_a_lock_that_cannot_be_made_is_one_backend_error(tmp_path: Path) -> None:
    """A store root that is not a writable directory (here a file: ENOTDIR, which root cannot bypass
    as it does permissions) fails the lock with an error naming it, not an OSError traceback."""
    (tmp_path / "root").write_text("a file, not a directory")
    store = FsspecBlobStore.from_spec(StorageSpec(str(tmp_path / "root" / "store"), "blake3"))
    not_a_directory = r"cannot take the lock …/store/store.lock.gate: Not a directory"
    with pytest.raises(BackendError, match=not_a_directory), store.lock(exclusive=True):
        pass


def test_a_waiting_deletion_is_not_overtaken_by_later_ingests(tmp_path: Path) -> None:
    """Linux lets new shared holders of a ``flock`` in while an exclusive one waits: overlapping ingests
    kept a deletion waiting for as long as they came. Later ingests now queue behind it."""
    import fcntl

    store = local_store(tmp_path / "store")
    order: list[str] = []

    def take(name: str, exclusive: bool) -> None:
        with store.lock(exclusive=exclusive):
            order.append(name)

    deletion = threading.Thread(target=take, args=("deletion", True), daemon=True)
    later_ingest = threading.Thread(target=take, args=("later ingest", False), daemon=True)
    with store.lock(exclusive=False):  # the first ingest
        deletion.start()
        # The deletion holds the gate while it waits for the lock: wait until it does.
        gate = os.open(tmp_path / "store" / "store.lock.gate", os.O_RDWR)
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    break
                fcntl.flock(gate, fcntl.LOCK_UN)
                time.sleep(0.001)
        finally:
            os.close(gate)
        assert deletion.is_alive()  # still waiting
        later_ingest.start()
        later_ingest.join(timeout=0.5)
        assert order == []  # the later ingest queues behind the waiting deletion
    deletion.join(timeout=30)
    later_ingest.join(timeout=30)
    assert order == ["deletion", "later ingest"]


def test_remote_stores_hold_no_lock(memory_url: str) -> None:
    store = FsspecBlobStore.from_spec(StorageSpec(url=memory_url, digest="blake3"))
    acquired = threading.Event()

    def take() -> None:
        with store.lock(exclusive=True):
            acquired.set()

    with store.lock(exclusive=True):
        other = threading.Thread(target=take, daemon=True)
        other.start()
        other.join(timeout=30)
        assert acquired.is_set()  # a second exclusive holder was not kept waiting
    assert memory_files(memory_url) == {}
