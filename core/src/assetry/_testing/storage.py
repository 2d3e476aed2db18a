"""`BlobStoreContract`: the tests every `BlobStore` must pass.

Subclass it and provide one fixture, ``make_blob_store``: a factory that takes a digest algorithm
(``"blake3"``, ``"sha256"``) and returns a store over a fresh, empty location. Clean the location up in
the fixture's teardown::

    class TestMyStorage(BlobStoreContract):
        @pytest.fixture
        def make_blob_store(self, tmp_path):
            return lambda algorithm: MyBlobStore(tmp_path, algorithm=algorithm)

The ``blob_store`` fixture (a default-algorithm store, closed after the test) is built from it. A suite
that overrides only ``blob_store`` still runs every test but the one needing another algorithm, which
fails asking for ``make_blob_store``.
"""

from __future__ import annotations

import io
import random
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from assetry.backends import BlobStore
from assetry.content import Content
from assetry.digests import CHUNK_SIZE, DEFAULT_ALGORITHM, digest_bytes
from assetry.errors import BlobNotFound, NotSupported, ValidationError

MakeBlobStore = Callable[[str], BlobStore]
"""``make_blob_store(algorithm)``: a new store over a fresh, empty location."""

_MISSING = "blake3:" + "ab" * 32


def _payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes (a compressing backend must not make the tests trivial)."""
    return random.Random(seed).randbytes(size)


def _read_all(store: BlobStore, digest: str) -> bytes:
    with store.open(digest) as reader:
        return reader.read()


class _OneShotStream(io.RawIOBase):
    """A stream that cannot seek, like a socket or a pipe: it can only be read once."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), len(self._data) - self._pos, 64 * 1024)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class BlobStoreContract:
    """Behaviour every blob storage backend must have. See the module docstring for how to use it."""

    @pytest.fixture
    def make_blob_store(self) -> MakeBlobStore:
        pytest.fail(
            f"{type(self).__name__} must provide a `make_blob_store` fixture: a factory taking a digest "
            "algorithm and returning a store over a fresh, empty location"
        )

    @pytest.fixture
    def blob_store(self, make_blob_store: MakeBlobStore) -> Iterator[BlobStore]:
        store = make_blob_store(DEFAULT_ALGORITHM)
        yield store
        store.close()

    # -- put: digests and sizes -----------------------------------------------------------------------

    def test_put_bytes_gives_digest_and_size(self, blob_store: BlobStore) -> None:
        data = b"a picture of a cat, in bytes"
        stored = blob_store.put(Content.from_bytes(data))
        assert stored.digest == digest_bytes(data, blob_store.algorithm)
        assert stored.size == len(data)
        assert stored.written is True

    def test_put_path_gives_digest_and_size(self, blob_store: BlobStore, tmp_path: Path) -> None:
        data = _payload(10_000)
        source = tmp_path / "source.bin"
        source.write_bytes(data)
        stored = blob_store.put(Content.from_path(source))
        assert stored.digest == digest_bytes(data, blob_store.algorithm)
        assert stored.size == len(data)
        assert stored.written is True
        assert source.read_bytes() == data, "storing must not consume or alter the source file"

    def test_put_stream_gives_digest_and_size(self, blob_store: BlobStore) -> None:
        data = _payload(10_000, seed=1)
        content = Content.from_stream(_OneShotStream(data))  # type: ignore[arg-type]
        stored = blob_store.put(content)
        assert stored.digest == digest_bytes(data, blob_store.algorithm)
        assert stored.size == len(data)
        with content.open() as reader:
            assert reader.read() == data, "the content must stay re-readable after put"

    def test_default_algorithm_is_named_in_digest(self, blob_store: BlobStore) -> None:
        stored = blob_store.put(Content.from_bytes(b"x"))
        assert stored.digest.startswith(f"{blob_store.algorithm}:")

    def test_sha256_store(self, make_blob_store: MakeBlobStore) -> None:
        store = make_blob_store("sha256")
        try:
            assert store.algorithm == "sha256"
            data = _payload(3000, seed=2)
            stored = store.put(Content.from_bytes(data))
            assert stored.digest == digest_bytes(data, "sha256")
            assert _read_all(store, stored.digest) == data
            assert list(store.iter_blobs()) == [(stored.digest, len(data))]
        finally:
            store.close()

    # -- round trips (I1) -----------------------------------------------------------------------------

    @pytest.mark.parametrize("size", [1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1])
    def test_round_trip(self, blob_store: BlobStore, size: int) -> None:
        data = _payload(size, seed=size)
        stored = blob_store.put(Content.from_bytes(data))
        read = _read_all(blob_store, stored.digest)
        assert read == data
        assert digest_bytes(read, blob_store.algorithm) == stored.digest

    def test_empty_content(self, blob_store: BlobStore) -> None:
        stored = blob_store.put(Content.from_bytes(b""))
        assert stored.digest == digest_bytes(b"", blob_store.algorithm)
        assert stored.size == 0
        assert blob_store.has(stored.digest)
        assert blob_store.size(stored.digest) == 0
        assert _read_all(blob_store, stored.digest) == b""
        assert list(blob_store.iter_blobs()) == [(stored.digest, 0)]

    @pytest.mark.parametrize("source", ["bytes", "path", "stream"])
    def test_content_larger_than_chunk(self, blob_store: BlobStore, tmp_path: Path, source: str) -> None:
        data = _payload(3 * CHUNK_SIZE + 12_345, seed=3)
        if source == "bytes":
            content = Content.from_bytes(data)
        elif source == "path":
            (tmp_path / "big.bin").write_bytes(data)
            content = Content.from_path(tmp_path / "big.bin")
        else:
            content = Content.from_stream(_OneShotStream(data))  # type: ignore[arg-type]
        stored = blob_store.put(content)
        content.close()
        assert stored.digest == digest_bytes(data, blob_store.algorithm)
        assert stored.size == len(data)
        assert blob_store.size(stored.digest) == len(data)
        assert _read_all(blob_store, stored.digest) == data

    def test_read_in_pieces(self, blob_store: BlobStore) -> None:
        data = _payload(200_000, seed=4)
        stored = blob_store.put(Content.from_bytes(data))
        pieces = []
        with blob_store.open(stored.digest) as reader:
            while piece := reader.read(7_777):
                pieces.append(piece)
        assert b"".join(pieces) == data

    # -- deduplication (I8) ---------------------------------------------------------------------------

    def test_same_content_twice_is_one_blob(self, blob_store: BlobStore) -> None:
        data = b"the same bytes"
        first = blob_store.put(Content.from_bytes(data))
        second = blob_store.put(Content.from_bytes(data))
        assert first.written is True
        assert second.written is False
        assert second.digest == first.digest
        assert second.size == first.size
        assert list(blob_store.iter_blobs()) == [(first.digest, len(data))]
        assert _read_all(blob_store, first.digest) == data

    def test_same_content_from_different_sources_is_one_blob(
        self, blob_store: BlobStore, tmp_path: Path
    ) -> None:
        data = _payload(50_000, seed=5)
        (tmp_path / "a.bin").write_bytes(data)
        results = [
            blob_store.put(Content.from_path(tmp_path / "a.bin")),
            blob_store.put(Content.from_bytes(data)),
            blob_store.put(Content.from_stream(io.BytesIO(data))),
        ]
        assert [r.written for r in results] == [True, False, False]
        assert len({r.digest for r in results}) == 1
        assert list(blob_store.iter_blobs()) == [(results[0].digest, len(data))]

    def test_put_many(self, blob_store: BlobStore) -> None:
        datas = [b"one", b"two", b"one", b""]
        results = blob_store.put_many([Content.from_bytes(d) for d in datas])
        assert [r.digest for r in results] == [digest_bytes(d, blob_store.algorithm) for d in datas]
        assert [r.size for r in results] == [len(d) for d in datas]
        assert [r.written for r in results] == [True, True, False, True]
        assert sorted(blob_store.iter_blobs()) == sorted(
            {(digest_bytes(d, blob_store.algorithm), len(d)) for d in datas}
        )

    def test_put_many_keeps_order_and_dedups_across_batches(self, blob_store: BlobStore) -> None:
        # More items than any sensible upload batch, with repeats near and far apart.
        datas = [_payload(100 + i % 45, seed=i % 45) for i in range(100)]
        results = blob_store.put_many([Content.from_bytes(d) for d in datas])
        assert [r.digest for r in results] == [digest_bytes(d, blob_store.algorithm) for d in datas]
        assert [r.size for r in results] == [len(d) for d in datas]
        assert [r.written for r in results] == [i < 45 for i in range(100)]
        assert len(list(blob_store.iter_blobs())) == 45
        again = blob_store.put_many([Content.from_bytes(d) for d in datas[:10]])
        assert not any(r.written for r in again)

    def test_put_many_mixes_small_and_large(self, blob_store: BlobStore, tmp_path: Path) -> None:
        large = _payload(3 * CHUNK_SIZE + 7, seed=7)
        (tmp_path / "large.bin").write_bytes(large)
        contents = [
            Content.from_bytes(b"small"),
            Content.from_path(tmp_path / "large.bin"),
            Content.from_bytes(b"small"),
            Content.from_bytes(large),
        ]
        results = blob_store.put_many(contents)
        assert [r.written for r in results] == [True, True, False, False]
        assert _read_all(blob_store, results[1].digest) == large
        assert blob_store.size(results[3].digest) == len(large)

    # -- ranged reads ---------------------------------------------------------------------------------

    def test_read_range(self, blob_store: BlobStore) -> None:
        data = _payload(CHUNK_SIZE + 1000, seed=8)
        digest = blob_store.put(Content.from_bytes(data)).digest
        size = len(data)
        for start, length in [
            (0, 10),
            (5, 100),
            (CHUNK_SIZE - 5, 10),  # across a chunk boundary
            (0, size),
            (size - 10, 100),  # cut short at the end
            (size - 1, 1),
        ]:
            expected = data[start : start + length]
            assert blob_store.read_range(digest, start, length) == expected, (start, length)
        assert blob_store.read_range(digest, 10, 0) == b""
        assert blob_store.read_range(digest, size, 10) == b"", "a range at the end is empty"
        assert blob_store.read_range(digest, size + 1000, 10) == b"", "a range past the end is empty"

    def test_read_range_of_empty_blob(self, blob_store: BlobStore) -> None:
        digest = blob_store.put(Content.from_bytes(b"")).digest
        assert blob_store.read_range(digest, 0, 10) == b""

    def test_read_range_of_missing_blob(self, blob_store: BlobStore) -> None:
        with pytest.raises(BlobNotFound):
            blob_store.read_range(_MISSING, 0, 10)
        with pytest.raises(BlobNotFound):
            blob_store.read_range(_MISSING, 0, 0)

    @pytest.mark.parametrize(("start", "length", "field"), [(-1, 10, "start"), (0, -1, "length")])
    def test_read_range_rejects_negative(
        self, blob_store: BlobStore, start: int, length: int, field: str
    ) -> None:
        digest = blob_store.put(Content.from_bytes(b"abc")).digest
        with pytest.raises(ValidationError) as info:
            blob_store.read_range(digest, start, length)
        assert info.value.field == field

    # -- has / size / open / delete -------------------------------------------------------------------

    def test_has_size_open_delete(self, blob_store: BlobStore) -> None:
        data = _payload(4321, seed=6)
        digest = blob_store.put(Content.from_bytes(data)).digest
        assert blob_store.has(digest)
        assert blob_store.size(digest) == len(data)
        assert _read_all(blob_store, digest) == data
        blob_store.delete(digest)
        assert not blob_store.has(digest)
        with pytest.raises(BlobNotFound):
            blob_store.open(digest)
        with pytest.raises(BlobNotFound):
            blob_store.size(digest)
        assert list(blob_store.iter_blobs()) == []

    def test_put_after_delete_writes_again(self, blob_store: BlobStore) -> None:
        digest = blob_store.put(Content.from_bytes(b"back again")).digest
        blob_store.delete(digest)
        again = blob_store.put(Content.from_bytes(b"back again"))
        assert again.written is True
        assert _read_all(blob_store, digest) == b"back again"

    def test_delete_leaves_other_blobs(self, blob_store: BlobStore) -> None:
        keep = blob_store.put(Content.from_bytes(b"keep")).digest
        drop = blob_store.put(Content.from_bytes(b"drop")).digest
        blob_store.delete(drop)
        assert blob_store.has(keep)
        assert _read_all(blob_store, keep) == b"keep"

    def test_missing_blob(self, blob_store: BlobStore) -> None:
        assert not blob_store.has(_MISSING)
        with pytest.raises(BlobNotFound) as info:
            blob_store.open(_MISSING)
        assert info.value.digest == _MISSING
        with pytest.raises(BlobNotFound):
            blob_store.size(_MISSING)

    def test_delete_missing_is_fine(self, blob_store: BlobStore) -> None:
        blob_store.delete(_MISSING)
        digest = blob_store.put(Content.from_bytes(b"twice")).digest
        blob_store.delete(digest)
        blob_store.delete(digest)
        assert not blob_store.has(digest)

    @pytest.mark.parametrize("bad", ["", "blake3", "blake3:xyz", "../../etc/passwd", "blake3:../" + "a" * 40])
    def test_malformed_digest_is_rejected(self, blob_store: BlobStore, bad: str) -> None:
        read_range = lambda digest: blob_store.read_range(digest, 0, 1)  # noqa: E731
        for call in (blob_store.has, blob_store.open, blob_store.size, blob_store.delete, read_range):
            with pytest.raises(ValidationError) as info:
                call(bad)
            assert info.value.field == "digest"

    # -- listing --------------------------------------------------------------------------------------

    def test_iter_blobs_lists_exactly_the_stored_blobs(self, blob_store: BlobStore) -> None:
        assert list(blob_store.iter_blobs()) == []
        datas = [_payload(n, seed=n) for n in (0, 1, 100, 5000, 70_000)]
        expected = {}
        for data in datas:
            stored = blob_store.put(Content.from_bytes(data))
            expected[stored.digest] = len(data)
        blob_store.put(Content.from_bytes(datas[2]))
        listed = list(blob_store.iter_blobs())
        assert len(listed) == len(expected), "each blob is listed once"
        assert dict(listed) == expected
        gone = next(iter(expected))
        blob_store.delete(gone)
        del expected[gone]
        assert dict(blob_store.iter_blobs()) == expected

    # -- optional features ----------------------------------------------------------------------------

    def test_local_path_is_none_or_holds_the_bytes(self, blob_store: BlobStore) -> None:
        data = b"maybe on disk"
        digest = blob_store.put(Content.from_bytes(data)).digest
        path = blob_store.local_path(digest)
        if path is not None:
            assert Path(path).read_bytes() == data

    def test_signed_url_serves_the_blob_or_is_not_supported(self, blob_store: BlobStore) -> None:
        data = _payload(5000, seed=9)
        digest = blob_store.put(Content.from_bytes(data)).digest
        try:
            url = blob_store.signed_url(digest, timedelta(minutes=5))
        except NotSupported:
            return
        with urllib.request.urlopen(url, timeout=30) as response:  # a plain GET, no credentials
            assert response.read() == data

    def test_describe(self, blob_store: BlobStore) -> None:
        text = blob_store.describe()
        assert isinstance(text, str)
        assert text.strip()
        assert "\n" not in text
