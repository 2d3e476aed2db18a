"""The digest cache: what local files hashed to, so adding them again need not read them.

git's index and DVC's state database do the same. An entry holds a file's path, its stat signature
(device, inode, size, modification and change times in nanoseconds) and its digest; it is used only while
the file's signature is unchanged. The change time (ctime) is what makes this safe: every write, rename or
``touch`` sets it to the current time, and no program can set it back (tools that restore the
modification time, such as ``cp -p`` or ``rsync -t``, still change it).

One gap remains, the one git calls "racy": file times are taken from a clock that ticks every few
milliseconds, so a file rewritten within the same tick as it was hashed keeps its signature. An entry is
therefore recorded only for a file that had not changed for `RACY_MARGIN_NS` when the ingest began, under
the signature seen before it was read. Any write after that moment gives the file a later change time,
so if the file changed while it was read, the entry names a signature the file no longer has and is
never used. Freshly generated files are recorded by the next ingest that sees them, once they are older
than the margin.

Windows is left out: its ``st_ctime`` is the creation time, which a write does not change. So are files
on file systems that keep no change time (FAT and exFAT: Linux reports the modification time as both),
found by their device in ``/proc/self/mountinfo``.

The cache is an optimisation and never a reason for an ingest to fail: if its file cannot be opened or
written, a warning names it and the ingest reads every file.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from assetry.content import Content

log = logging.getLogger(__name__)

RACY_MARGIN_NS = 2_000_000_000
"""A file is remembered only if it had not changed for this long when the ingest began: far more than
the clock tick of any local file system (Linux: 1-10 ms; the coarsest, FAT's 2 s, is excluded anyway)."""

KEEP_DAYS = 90
"""Entries not used for this long are dropped (files deleted or moved away leave theirs behind)."""

SUPPORTED = sys.platform != "win32"

NO_CHANGE_TIME = frozenset({"vfat", "msdos", "exfat", "fat", "umsdos"})
"""File system types (as Linux names them) whose files are never remembered."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    path TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,
    digest TEXT NOT NULL,
    day INTEGER NOT NULL,
    PRIMARY KEY (path, algorithm)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests_day ON digests (day);
"""
_CHUNK = 500  # paths per query: well under SQLite's limit on bound parameters


def signature(st: os.stat_result) -> str:
    """What must be unchanged for a remembered digest to still hold. (A string, not integers: inode
    numbers can exceed SQLite's signed 64-bit integers.)"""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _key(content: Content) -> str | None:
    """The file's path as the cache keys it, or None for a path SQLite cannot store as text: a name that
    is not valid UTF-8 (Python keeps its bytes as surrogate escapes). Such files are read every time."""
    path = str(content.local_path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return path


class DigestCache:
    """Digests of local files by path and signature, in a SQLite file shared by every store (a digest is
    a fact about a file, not about a store). Safe to use from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._types: dict[int, str] | None = None  # st_dev -> file system type, read when first needed
        self._connection: sqlite3.Connection | None = None
        self._pid = 0  # the process that opened the connection
        self._inherited: list[sqlite3.Connection] = []  # a parent's, kept from being closed (see `_run`)
        self._broken = False
        self._lock = threading.Lock()

    @staticmethod
    def started() -> int:
        """The time to pass to `record` for files read from now on."""
        return time.time_ns()

    def lookup(self, contents: Sequence[Content], algorithm: str) -> dict[int, str]:
        """Digests remembered for these contents (by index) whose files still have the same signature."""
        keys = ((_key(c), i) for i, c in enumerate(contents) if c.stat is not None)
        local = {key: i for key, i in keys if key is not None}
        if not local or not self.path.exists():  # (looking up must not create the file)
            return {}
        rows = self._run(self._select, list(local), algorithm) or []
        found: dict[int, str] = {}
        today = _today()
        stale = []
        for path, sig, digest, day in rows:
            index = local[path]
            st = contents[index].stat
            if st is not None and signature(st) == sig:
                found[index] = digest
                if day < today:
                    stale.append(path)
        if stale:  # (written at most once a day per entry: a re-ingest usually writes nothing)
            self._run(self._touch, stale, algorithm, today)
        return found

    def record(self, hashed: Iterable[tuple[Content, str]], algorithm: str, started_ns: int) -> int:
        """Remember digests just computed, for files that are safe to remember (see the module's text);
        returns how many were recorded. ``started_ns`` is `started`, taken before the files were read."""
        settled_before = started_ns - RACY_MARGIN_NS
        rows = [
            (key, algorithm, signature(st), digest)
            for content, digest in hashed
            if (st := content.stat) is not None
            and max(st.st_mtime_ns, st.st_ctime_ns) < settled_before
            and self._keeps_change_times(st.st_dev)
            and (key := _key(content)) is not None
        ]
        if rows and self._run(self._insert, rows) is None:
            return 0
        return len(rows)

    def _keeps_change_times(self, device: int) -> bool:
        if self._types is None:
            try:
                with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                    self._types = file_system_types(f.read())
            except OSError:  # not Linux: nothing known, nothing excluded
                self._types = {}
        return self._types.get(device) not in NO_CHANGE_TIME

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
                self._connection = None

    # -- SQLite ---------------------------------------------------------------------------------------

    def _run(self, action: Callable[..., Any], *args: Any) -> Any:
        import sqlite3

        with self._lock:
            if self._broken:
                return None
            if self._connection is not None and self._pid != os.getpid():
                # A forked child must not use its parent's connection (SQLite's rule). It opens its own
                # and keeps the parent's from ever being closed here: closing it could checkpoint and
                # remove the write-ahead log the parent is still using.
                self._inherited.append(self._connection)
                self._connection = None
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    self._pid = os.getpid()
                return action(self._connection, *args)
            except (sqlite3.Error, OSError) as exc:
                # Disabled for the rest of this store's life: one warning, not one per batch.
                self._broken = True
                log.warning(
                    "digest cache %s unusable (%s); files are read and hashed every time", self.path, exc
                )
                return None

    def _connect(self) -> sqlite3.Connection:
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        try:
            # WAL: an ingest reading the cache does not wait for another one writing to it.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # a lost entry only costs a re-read
            connection.executescript(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _select(
        connection: sqlite3.Connection, paths: list[str], algorithm: str
    ) -> list[tuple[str, str, str, int]]:
        rows: list[tuple[str, str, str, int]] = []
        for chunk, marks in _chunks(paths):
            rows.extend(
                connection.execute(
                    "SELECT path, signature, digest, day FROM digests"
                    f" WHERE algorithm = ? AND path IN ({marks})",
                    (algorithm, *chunk),
                )
            )
        return rows

    @staticmethod
    def _touch(connection: sqlite3.Connection, paths: list[str], algorithm: str, today: int) -> None:
        with connection:
            for chunk, marks in _chunks(paths):
                connection.execute(
                    f"UPDATE digests SET day = ? WHERE algorithm = ? AND path IN ({marks})",
                    (today, algorithm, *chunk),
                )

    @staticmethod
    def _insert(connection: sqlite3.Connection, rows: list[tuple[str, str, str, str]]) -> bool:
        today = _today()
        with connection:
            connection.executemany(
                "INSERT OR REPLACE INTO digests (path, algorithm, signature, digest, day)"
                " VALUES (?, ?, ?, ?, ?)",
                [(*row, today) for row in rows],
            )
            connection.execute("DELETE FROM digests WHERE day < ?", (today - KEEP_DAYS,))
        return True

    def __repr__(self) -> str:
        return f"<DigestCache {self.path}>"


def file_system_types(mountinfo: str) -> dict[int, str]:
    """Device number -> file system type, from the text of ``/proc/self/mountinfo``: field 3 is
    ``major:minor``, and the type follows the ``-`` that ends the optional fields."""
    types: dict[int, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            types[os.makedev(int(major), int(minor))] = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
    return types


def _chunks(paths: list[str]) -> Iterator[tuple[list[str], str]]:
    """``paths`` a `_CHUNK` at a time, each with its ``?,?,...`` placeholders."""
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start : start + _CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def _today() -> int:
    return int(time.time() // 86400)
