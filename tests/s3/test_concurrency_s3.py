"""Several processes writing into one S3 store at once (a moto server): nothing lost, nothing duplicated,
every blob intact. Also the memory bulk and large uploads take, measured in a process of their own (the
moto server's own memory would otherwise be counted)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

import assetry
from assetry.digests import digest_bytes
from assetry.model import Filter
from assetry_fsspec import storage
from tests.s3 import workers
from tests.s3.helpers import S3

pytestmark = pytest.mark.s3

WORKERS = 4
MiB = 1024 * 1024


def run_processes(target: Any, args: list[tuple[Any, ...]], *, barrier: bool = False) -> list[Any]:
    """Run ``target(*each, [barrier], queue)`` for each tuple in ``args``, each in a fresh spawned
    process. Returns their results; fails with the first worker's traceback."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    shared = [context.Barrier(len(args))] if barrier else []
    processes = [context.Process(target=target, args=(*each, *shared, queue)) for each in args]
    for process in processes:
        process.start()
    outcomes = [queue.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [detail for _, detail in outcomes]


def test_concurrent_ingest_from_several_processes(s3: S3) -> None:
    settings = s3.store_config("shared")
    added = run_processes(workers.ingest, [(w, settings) for w in range(WORKERS)], barrier=True)

    with assetry.open(**settings) as store:
        assets = list(store.iter())
        labels = sorted(a.label for a in assets)
        expected = [f"w{w}-{i}.bin" for w in range(WORKERS) for i in range(workers.CONTENTS)]
        expected += [f"builtin-{i}.bin" for i in range(workers.BUILTINS)]
        assert labels == sorted(expected), "every asset present exactly once"
        assert sorted(a.id for a in assets) == sorted(
            [i for ids in added for i in ids] + [workers.builtin_id(i) for i in range(workers.BUILTINS)]
        )
        assert store.catalog.count(Filter()) == len(expected)

        # One blob per distinct content, each re-hashing to its digest, each referenced.
        blobs = dict(store.blobs.iter_blobs())
        contents = {digest_bytes(workers.content(i)): workers.content(i) for i in range(workers.CONTENTS)}
        assert set(blobs) == set(contents)
        for digest in blobs:
            with store.blobs.open(digest) as reader:
                data = reader.read()
            assert digest_bytes(data) == digest
            assert data == contents[digest]
        assert set(store.catalog.iter_digests()) == set(blobs), "no row without its blob, no orphan"
        assert s3.pending_uploads() == []

        # Usage folded by every process into the same rows: recorded, counts never above the truth.
        builtins = store.catalog.get_many([workers.builtin_id(i) for i in range(workers.BUILTINS)])
        for asset in builtins.values():
            assert asset.last_used is not None
            assert 1 <= asset.access_count <= WORKERS


def _write_files(directory: Path, count: int, size: int) -> Path:
    directory.mkdir()
    for i in range(count):
        (directory / f"f{i:05d}.bin").write_bytes(os.urandom(size))
    return directory


def test_bulk_put_many_memory_is_bounded(s3: S3, tmp_path: Path) -> None:
    # 400 files of 64 KiB (25 MiB). Measured with 2,000 such files: s3fs's put(list, list) with its default
    # batch size peaked at 309 MiB of Python memory; put_many at 7.4 MiB.
    directory = _write_files(tmp_path / "many", 400, 64 * 1024)
    settings = {"url": s3.url("bulk"), "options": s3.storage_options()}
    [result] = run_processes(workers.measure_put, [(settings, str(directory), "put_many")])
    assert result["written"] == 400
    assert len(s3.objects("bulk/")) == 400
    assert result["peak"] < 12 * MiB, f"peak Python memory {result['peak'] / MiB:.1f} MiB"


def test_large_upload_memory_is_bounded(s3: S3, tmp_path: Path) -> None:
    directory = tmp_path / "large"
    directory.mkdir()
    with open(directory / "large.bin", "wb") as f:
        for _ in range(80):
            f.write(os.urandom(MiB))
    settings = {"url": s3.url("large"), "options": s3.storage_options()}
    [result] = run_processes(workers.measure_put, [(settings, str(directory), "put")])
    assert result["written"] == 1
    assert list(s3.objects("large/").values()) == [80 * MiB]
    assert result["peak"] < 5 * storage.PART_SIZE, f"peak Python memory {result['peak'] / MiB:.1f} MiB"
