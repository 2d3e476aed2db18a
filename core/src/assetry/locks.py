"""File locks shared by processes on one machine: ``flock`` on a lock file (the store lock of local blob
storage, the catalog's commit lock). Windows has no ``flock``: there nothing is locked."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def flock(path: str, *, exclusive: bool) -> Iterator[None]:
    """Hold an exclusive or shared ``flock`` on ``path`` (created, with its directory, if missing). Each
    call opens the file anew, so threads of one process exclude each other as processes do."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:  # its directory was removed (or not made yet)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock
