"""The fast ingest paths (chosen by profiling, docs/benchmarks.md) keep ingest's guarantees: parallel puts,
enrichment only for new content, small files written beside their final name, and the sniffing index."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import assetry
from assetry import hookimpl
from assetry.content import Content
from assetry.errors import SourceError, ValidationError
from assetry.store import Store
from assetry_fsspec.storage import FsspecBlobStore
from assetry_media import sniff


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = assetry.open(root=tmp_path / "store", vectors={"dimension": 4})
    yield opened
    opened.close()


def _files(directory: Path, count: int, size: int = 3000) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"f{i:03d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _blob_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "blobs").rglob("*") if p.is_file())


def test_parallel_puts_store_every_file_once(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As many put threads as on a 4-core machine, whatever this one has.
    monkeypatch.setattr("assetry_fsspec.storage.LOCAL_PUT_WORKERS", 4)
    assert store.blobs.put_workers == 4  # type: ignore[attr-defined]
    paths = _files(tmp_path / "in", 40)
    twin = tmp_path / "in" / "twin.bin"
    twin.write_bytes(paths[0].read_bytes())
    report = store.add_many([tmp_path / "in"])
    assert report.added == 41
    assert report.blobs_written == 40, "equal contents put at once count as one write"
    assert len(_blob_files(tmp_path / "store")) == 40
    for asset, path in zip(report.assets, sorted((tmp_path / "in").iterdir()), strict=True):
        assert store.read(asset) == path.read_bytes()


def test_a_failing_put_leaves_nothing_and_names_the_first_failing_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _files(tmp_path / "in", 30)
    broken = {paths[7].name, paths[20].name}
    real_put = FsspecBlobStore.put

    def put(self: FsspecBlobStore, content: Content) -> Any:
        if content.name in broken:
            raise PermissionError(13, "Permission denied")
        return real_put(self, content)

    monkeypatch.setattr(FsspecBlobStore, "put", put)
    with pytest.raises(SourceError) as info:
        store.add_many(paths)
    assert info.value.field == paths[7].name
    assert _blob_files(tmp_path / "store") == []
    assert store.catalog.count(store.filter()) == 0


def test_enrichment_runs_for_new_content_only(store: Store, tmp_path: Path) -> None:
    seen: list[str | None] = []

    class Counting:
        @hookimpl
        def assetry_ingest(self, content: Content) -> None:
            seen.append(content.name)

    store.plugins.register(Counting())
    _files(tmp_path / "in", 5)
    store.add_many([tmp_path / "in"])
    assert len(seen) == 5
    seen.clear()
    again = store.add_many([tmp_path / "in"])
    assert again.duplicates == 5
    assert seen == [], "duplicates are not sniffed or parsed again"
    (tmp_path / "in" / "new.bin").write_bytes(b"new content")
    store.add_many([tmp_path / "in"])
    assert seen == ["new.bin"]


def test_an_invalid_enrichment_removes_the_blobs_of_its_batch(store: Store, tmp_path: Path) -> None:
    class Bad:
        @hookimpl
        def assetry_ingest(self, content: Content) -> dict[str, object] | None:
            return {"seed": "not a number"} if content.name == "f003.bin" else None

    store.plugins.register(Bad())
    _files(tmp_path / "in", 6)
    with pytest.raises(ValidationError) as info:
        store.add_many([tmp_path / "in"])
    assert info.value.field == "seed"
    assert _blob_files(tmp_path / "store") == []
    assert store.catalog.count(store.filter()) == 0


def test_small_files_are_written_beside_their_name_and_stale_ones_are_swept(tmp_path: Path) -> None:
    from assetry.backends import StorageSpec

    blobs = FsspecBlobStore.from_spec(StorageSpec(str(tmp_path / "s"), "blake3"))
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 5000)
    stored = blobs.put(Content.from_path(source))
    leaf = Path(blobs._key(stored.digest)).parent
    assert sorted(p.name for p in leaf.iterdir()) == [Path(blobs._key(stored.digest)).name]
    # A crash between the write and the rename leaves a dot file beside the blob: never listed, swept.
    stale = leaf / ".0123abcd.tmp"
    stale.write_bytes(b"partial")
    assert list(blobs.iter_blobs()) == [(stored.digest, 5000)]
    assert blobs.sweep_temp(timedelta(hours=1)) == 0
    assert blobs.sweep_temp(timedelta(0)) == 1
    assert not stale.exists()
    assert blobs.has(stored.digest)


def test_the_signature_index_agrees_with_puremagic(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    heads = [rng.randbytes(rng.choice([1, 8, 300, 5000, 65536])) for _ in range(300)]
    heads += [
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        b"GIF89a" + bytes(50),
        b"%PDF-1.7\n",
        b"\xff\xd8\xff\xe0" + bytes(20),
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"PK\x03\x04" + bytes(30),
        bytes(257) + b"ustar\x00",
        b"hello world\n",
    ]
    names = [None, "a.bin", "a.png", "noext", "a.unknownext", "a.txt"]
    fast = {(h, n): sniff.sniff_media_type(h, name=n, size=len(h)) for h in heads for n in names}
    monkeypatch.setattr(sniff, "_any_signature", lambda head: True)
    slow = {(h, n): sniff.sniff_media_type(h, name=n, size=len(h)) for h in heads for n in names}
    assert fast == slow
