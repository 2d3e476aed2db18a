"""File locks shared by processes on one machine: ``flock`` on a lock file (the store lock of local blob
storage, the catalog's commit lock). Windows has no ``flock``: there nothing is locked."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from assetry.errors import BackendError


@contextlib.contextmanager
def flock(path: str, *, exclusive: bool) -> Iterator[None]:
    """Hold an exclusive or shared ``flock`` on ``path`` (created, with its directory, if missing). Each
    call opens the file anew, so threads of one process exclude each other as processes do.

    Every acquisition first passes a turnstile, an exclusive lock on ``<path>.gate`` held only until
    ``path`` is locked: Linux lets new shared holders in while an exclusive one waits, so a deletion
    waited for as long as overlapping ingests kept coming. A waiting exclusive holder keeps the gate,
    and shared holders arriving after it queue behind it."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    with _open_fd(f"{path}.gate") as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        lock = _open(path)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(lock)
            raise
    try:
        yield
    finally:
        os.close(lock)  # releases the lock


@contextlib.contextmanager
def _open_fd(path: str) -> Iterator[int]:
    fd = _open(path)
    try:
        yield fd
    finally:
        os.close(fd)  # releases any lock taken on it


def _open(path: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:  # its directory was removed (or not made yet)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return os.open(path, flags, 0o666)
    except OSError as exc:  # a store on a read-only file system, say: one line naming the lock
        shown = os.path.join("…", os.path.basename(os.path.dirname(path)), os.path.basename(path))
        raise BackendError(f"cannot take the lock {shown}: {exc.strerror or exc}") from None
