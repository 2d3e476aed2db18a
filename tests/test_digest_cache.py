"""The digest cache: a re-add of unchanged local files reads none of them, and a changed file is always
read again, whatever was done to hide the change (same size, old modification time, a rename over it).

Most tests shrink the "racy" margin from 2 s to 50 ms (still ten times a clock tick here) and wait it out,
so they need not sleep for seconds; one test keeps the real margin.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assetry
from assetry import digest_cache
from assetry.cli import cli
from assetry.config import load_config
from assetry.digests import digest_bytes
from assetry.store import Store

from .conftest import DIMENSION

MARGIN_S = 0.05


@pytest.fixture
def short_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_cache, "RACY_MARGIN_NS", int(MARGIN_S * 1e9))


def settle() -> None:
    """Wait until files written so far are older than the (shortened) margin."""
    time.sleep(MARGIN_S * 1.5)


def settled_file(directory: Path, data: bytes) -> Path:
    path = directory / "image.bin"
    path.write_bytes(data)
    settle()
    return path


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "xdg-cache" / "assetry" / "digests.sqlite"  # XDG_CACHE_HOME is set by conftest


def rewrite_keeping_times(path: Path, data: bytes) -> None:
    """Replace a file's bytes with others of the same size, then restore its modification time, as
    ``cp -p`` or ``rsync -t`` would: only the change time still tells."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.usefixtures("short_margin")
def test_re_adding_unchanged_files_reads_none_of_them(store: Store, files: Path, tmp_path: Path) -> None:
    settle()
    first = store.add_many([files])
    assert (first.added, first.blobs_written, first.files_unread) == (7, 6, 0)  # (one file is a copy)
    assert cache_file(tmp_path).is_file()

    again = store.add_many([files])

    assert (again.added, again.duplicates, again.files_unread) == (0, 7, 7)
    assert [a.id for a in again.assets] == [a.id for a in first.assets]


@pytest.mark.usefixtures("short_margin")
def test_unread_files_are_counted_over_every_batch(store: Store, files: Path) -> None:
    settle()
    store.add_many([files], batch_size=3)

    again = store.add_many([files], batch_size=3)  # batches of 3, 3 and 1

    assert (again.duplicates, again.files_unread) == (7, 7)


@pytest.mark.usefixtures("short_margin")
def test_a_rewritten_file_is_read_again_though_size_and_mtime_are_restored(
    store: Store, tmp_path: Path
) -> None:
    path = settled_file(tmp_path, b"A" * 4096)
    old = store.add(path)
    rewrite_keeping_times(path, b"B" * 4096)
    settle()

    report = store.add_many([path])

    assert (report.added, report.files_unread) == (1, 0)
    assert report.assets[0].id != old.id
    assert store.read(report.assets[0]) == b"B" * 4096
    assert report.assets[0].digest == digest_bytes(b"B" * 4096)


@pytest.mark.usefixtures("short_margin")
def test_a_file_renamed_over_the_old_one_is_read_again(store: Store, tmp_path: Path) -> None:
    path = settled_file(tmp_path, b"A" * 4096)
    store.add(path)
    replacement = tmp_path / "replacement.tmp"
    replacement.write_bytes(b"C" * 4096)
    st = path.stat()
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)  # same path, size and mtime; another inode

    report = store.add_many([path])

    assert (report.added, report.files_unread) == (1, 0)
    assert store.read(report.assets[0]) == b"C" * 4096


def test_files_that_just_changed_are_not_remembered(store: Store, files: Path, tmp_path: Path) -> None:
    # The real 2-second margin: these files were written a moment ago, so a write within the same tick
    # of the file system's clock could still follow unseen. Nothing is recorded, nothing is trusted.
    store.add_many([files])
    again = store.add_many([files])

    assert (again.duplicates, again.files_unread) == (7, 0)
    assert not cache_file(tmp_path).exists()


@pytest.mark.usefixtures("short_margin")
def test_a_remembered_file_whose_blob_was_deleted_is_stored_again(store: Store, tmp_path: Path) -> None:
    path = settled_file(tmp_path, b"D" * 5000)
    asset = store.add(path)
    store.delete(asset.id)
    assert list(store.blobs.iter_blobs()) == []

    report = store.add_many([path])

    assert (report.added, report.blobs_written, report.files_unread) == (1, 1, 0)
    assert store.read(report.assets[0]) == b"D" * 5000


@pytest.mark.usefixtures("short_margin")
def test_a_known_file_under_a_new_label_is_cataloged_without_being_read(store: Store, tmp_path: Path) -> None:
    path = settled_file(tmp_path, b"E" * 5000)
    first = store.add(path)

    report = store.add_many([(path, {"label": "other.bin"})])

    assert (report.added, report.blobs_written, report.files_unread) == (1, 0, 1)
    assert report.assets[0].digest == first.digest
    assert report.assets[0].size == 5000
    assert store.read(report.assets[0]) == b"E" * 5000


@pytest.mark.usefixtures("short_margin")
def test_a_file_name_that_is_not_utf8_is_ingested_without_the_cache(store: Store, tmp_path: Path) -> None:
    # Unpacked from an old archive: the name's bytes are Latin-1, which Python keeps as surrogate
    # escapes and SQLite cannot store as text. The cache skips it; the label shows what it can.
    source = tmp_path / "legacy"
    source.mkdir()
    (source / os.fsdecode(b"r\xe9sum\xe9.txt")).write_bytes(b"a legacy file")
    (source / "plain.txt").write_bytes(b"a plain file")
    settle()
    store.add(settled_file(tmp_path, b"F" * 100))  # the cache file exists, as after any ingest
    assert cache_file(tmp_path).is_file()

    first = store.add_many([source])
    again = store.add_many([source])

    assert sorted(a.label for a in first.assets) == ["plain.txt", "r\ufffdsum\ufffd.txt"]
    assert (again.added, again.duplicates, again.files_unread) == (0, 2, 1)  # the legacy name is read again
    assert store.read(next(a for a in again.assets if a.label != "plain.txt")) == b"a legacy file"


@pytest.mark.usefixtures("short_margin")
def test_the_cache_can_be_turned_off(store_root: Path, files: Path, tmp_path: Path) -> None:
    settle()
    with assetry.open(root=store_root, ingest={"digest_cache": False}) as store:
        store.add_many([files])
        again = store.add_many([files])

    assert again.files_unread == 0
    assert not cache_file(tmp_path).exists()


@pytest.mark.usefixtures("short_margin")
def test_another_cache_path(store_root: Path, files: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "caches" / "mine.sqlite"
    settle()
    with assetry.open(root=store_root, ingest={"digest_cache_path": str(elsewhere)}) as store:
        store.add_many([files])
        again = store.add_many([files])

    assert again.files_unread == 7
    assert elsewhere.is_file()
    assert not cache_file(tmp_path).exists()


@pytest.mark.parametrize("damage", ["under a regular file", "not a database"])
@pytest.mark.usefixtures("short_margin")
def test_an_unusable_cache_is_a_warning_and_every_file_is_read(
    damage: str, store_root: Path, files: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if damage == "not a database":
        path = tmp_path / "broken.sqlite"
        path.write_bytes(b"this is not SQLite" * 100)
    else:
        (tmp_path / "plain").write_text("a file")
        path = tmp_path / "plain" / "digests.sqlite"
    settle()
    with (
        caplog.at_level(logging.WARNING, logger="assetry.digest_cache"),
        assetry.open(root=store_root, ingest={"digest_cache_path": str(path)}) as store,
    ):
        first = store.add_many([files])
        again = store.add_many([files])

    assert (first.added, again.duplicates, again.files_unread) == (7, 7, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0]


def test_the_effective_cache_path_is_in_the_config(tmp_path: Path) -> None:
    (tmp_path / "assetry.toml").write_text('[ingest]\ndigest_cache_path = "cache/d.sqlite"\n')
    config = load_config(tmp_path / "assetry.toml")
    assert config.digest_cache_path == tmp_path / "cache" / "d.sqlite"
    assert config.to_dict()["ingest"]["digest_cache_path"] == str(tmp_path / "cache" / "d.sqlite")

    off = load_config(use_file=False, env={"ASSETRY_INGEST__DIGEST_CACHE": "false"})
    assert off.digest_cache_path is None
    assert off.to_dict()["ingest"] == {"digest_cache": False, "digest_cache_path": None}


@pytest.mark.usefixtures("short_margin")
def test_the_cli_says_which_files_it_did_not_read(tmp_path: Path, files: Path) -> None:
    settle()
    runner = CliRunner()
    args = ["--root", str(tmp_path / "store"), "add", str(files)]
    assert runner.invoke(cli, args, catch_exceptions=False).exit_code == 0

    text = runner.invoke(cli, args, catch_exceptions=False)
    data = json.loads(runner.invoke(cli, [*args, "--json"], catch_exceptions=False).output)

    assert "7 files known unchanged, not read" in text.output
    assert (data["duplicates"], data["files_unread"]) == (7, 7)


# -- I1 under rewrites ---------------------------------------------------------------------------------

SAME_SIZE = [b"x" * 64, b"y" * 64, bytes(range(64))]
steps = st.lists(
    st.tuples(
        st.sampled_from(range(len(SAME_SIZE))),  # what the file holds next
        st.sampled_from(["rewrite", "rewrite keeping times", "replace keeping times", "leave"]),
        st.booleans(),  # wait out the margin before adding
    ),
    min_size=1,
    max_size=5,
)


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    with assetry.open(root=tmp_path / "prop-store", vectors={"dimension": DIMENSION}) as store:
        yield tmp_path / "prop", store


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
@pytest.mark.usefixtures("short_margin")
def test_every_add_stores_the_bytes_the_file_holds(
    fresh_store: tuple[Path, Store], plan: list[tuple[int, str, bool]]
) -> None:
    """DESIGN.md I1 with the cache in the way: whatever happens to the file between adds, the asset an
    add returns reads back exactly what the file held, and its digest is theirs."""
    directory, store = fresh_store
    directory.mkdir(exist_ok=True)
    path = directory / f"f{time.monotonic_ns()}.bin"  # one file per example; the cache outlives examples
    path.write_bytes(SAME_SIZE[0])
    for content, how, wait in plan:
        data = SAME_SIZE[content]
        if how == "rewrite":
            path.write_bytes(data)
        elif how == "rewrite keeping times":
            rewrite_keeping_times(path, data)
        elif how == "replace keeping times":
            st_ = path.stat()
            tmp = directory / "next.tmp"
            tmp.write_bytes(data)
            os.utime(tmp, ns=(st_.st_atime_ns, st_.st_mtime_ns))
            os.replace(tmp, path)
        if wait:
            settle()
        held = path.read_bytes()
        asset = store.add(path)
        assert store.read(asset) == held
        assert asset.digest == digest_bytes(held)


@pytest.mark.usefixtures("short_margin")
def test_entries_unused_for_months_are_dropped_and_used_ones_kept(store: Store, tmp_path: Path) -> None:
    old, kept = tmp_path / "old.bin", tmp_path / "kept.bin"
    old.write_bytes(b"o" * 100)
    kept.write_bytes(b"k" * 100)
    settle()
    store.add_many([old, kept])
    database = sqlite3.connect(cache_file(tmp_path))
    long_ago = int(time.time() // 86400) - digest_cache.KEEP_DAYS - 1
    with database:
        database.execute("UPDATE digests SET day = ?", (long_ago,))

    assert store.add_many([kept]).files_unread == 1  # a hit: its entry is used again today
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"f" * 100)
    settle()
    store.add(fresh)  # recording prunes

    remaining = {Path(p).name for (p,) in database.execute("SELECT path FROM digests")}
    database.close()
    assert remaining == {"kept.bin", "fresh.bin"}


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
41 27 8:17 / /media/usb\\040stick rw,nosuid shared:7 - vfat /dev/sdb1 rw,fmask=0022
"""


def test_file_system_types_are_read_from_mountinfo() -> None:
    types = digest_cache.file_system_types(MOUNTINFO + "garbage line\n")
    assert types == {os.makedev(0, 21): "proc", os.makedev(98, 0): "ext3", os.makedev(8, 17): "vfat"}


@pytest.mark.skipif(not Path("/proc/self/mountinfo").exists(), reason="Linux only")
def test_this_machines_mount_table_names_the_temporary_directorys_file_system(tmp_path: Path) -> None:
    types = digest_cache.file_system_types(Path("/proc/self/mountinfo").read_text())
    assert types.get(tmp_path.stat().st_dev), types


@pytest.mark.usefixtures("short_margin")
def test_files_on_a_file_system_without_change_times_are_not_remembered(tmp_path: Path) -> None:
    # A FAT drive cannot be mounted here, so the mount table is given: the device of these files is
    # said to be vfat, whose change time is the modification time.
    from assetry.content import Content

    path = settled_file(tmp_path, b"F" * 100)
    cache = digest_cache.DigestCache(tmp_path / "d.sqlite")
    cache._types = {path.stat().st_dev: "vfat"}
    started = cache.started()
    assert cache.record([(Content.from_path(path), digest_bytes(b"F" * 100))], "blake3", started) == 0
    cache._types = {path.stat().st_dev: "ext4"}
    assert cache.record([(Content.from_path(path), digest_bytes(b"F" * 100))], "blake3", started) == 1
    cache.close()


@pytest.mark.usefixtures("short_margin")
def test_a_forked_child_opens_a_connection_of_its_own(tmp_path: Path) -> None:
    from assetry.content import Content

    path = settled_file(tmp_path, b"G" * 100)
    digest = digest_bytes(b"G" * 100)
    cache = digest_cache.DigestCache(tmp_path / "d.sqlite")
    assert cache.record([(Content.from_path(path), digest)], "blake3", cache.started()) == 1
    parents = cache._connection
    pid = os.fork()
    if pid == 0:  # the child: only this test's code runs here, then it exits at once
        found = cache.lookup([Content.from_path(path)], "blake3")
        os._exit(0 if found == {0: digest} and cache._connection is not parents else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.lookup([Content.from_path(path)], "blake3") == {0: digest}  # the parent's still works
    assert cache._connection is parents
    cache.close()
