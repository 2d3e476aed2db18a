"""`Content`: the bytes being ingested, whatever the caller handed over (a path, bytes, a file object).

Content can be opened any number of times from the start, so ingest plugins can sniff it and the storage
backend can hash and copy it without the caller's object being consumed. A local file is opened again from
disk; bytes are wrapped; a stream that cannot seek is spooled to a temporary file first (memory stays
bounded: up to `SPOOL_MEMORY` bytes in RAM, the rest on disk).
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, BinaryIO

from assetry.errors import ContentMismatch, SourceError

SPOOL_MEMORY = 8 * 1024 * 1024
HEAD_SIZE = 64 * 1024

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""Anything `Store.add` accepts as content."""


def check_path(path: str | os.PathLike[str], field: str = "source") -> None:
    """An empty path is a mistake (an unset variable, say), not the working directory ``Path("")`` makes
    of it: adding or exporting "" would take in, or write into, whatever directory the process runs in."""
    if not os.fspath(path).strip():
        raise SourceError(field, "empty path")


class Content:
    """Re-openable content with a known size and optional local path.

    Build it with `from_path`, `from_bytes` or `from_stream` (or `Content.of(source)`); all validation of
    the source happens there, before anything is written.
    """

    def __init__(
        self,
        *,
        name: str | None,
        size: int,
        path: Path | None = None,
        data: bytes | None = None,
        spool: IO[bytes] | None = None,
        stat: os.stat_result | None = None,
    ) -> None:
        self.name = name
        self.size = size
        self._path = path
        self._data = data
        self._spool = spool
        self.stat = stat
        """A local file's status when this Content was made (the digest cache keys on it)."""
        self._head: bytes | None = None

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def of(cls, source: Source, *, name: str | None = None) -> Content:
        if isinstance(source, Content):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls.from_path(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(source), name=name)
        if hasattr(source, "read"):
            return cls.from_stream(source, name=name)
        raise SourceError("source", f"cannot ingest a {type(source).__name__}; give a path, bytes or a file")

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Content:
        check_path(path)
        p = Path(path)
        shown = p.name or str(p)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise SourceError(shown, "no such file") from None
        except PermissionError:
            raise SourceError(shown, "permission denied") from None
        except OSError as exc:
            raise SourceError(shown, exc.strerror or str(exc)) from None
        if stat.S_ISDIR(st.st_mode):
            raise SourceError(shown, "is a directory; use add_many (or `assetry add DIR`) for directories")
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(shown, "is not a regular file")
        if not os.access(p, os.R_OK):
            raise SourceError(shown, "permission denied")
        # absolute(), not resolve(): the path must survive a change of working directory, and resolving
        # symlinks (one lstat per path component) was a measurable share of ingesting small files.
        return cls(name=p.name, size=st.st_size, path=p.absolute(), stat=st)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str | None = None) -> Content:
        return cls(name=name, size=len(data), data=data)

    @classmethod
    def from_stream(cls, stream: IO[bytes], *, name: str | None = None) -> Content:
        if name is None:
            raw_name = getattr(stream, "name", None)
            name = Path(raw_name).name if isinstance(raw_name, str) and raw_name else None
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - owned by Content
        size = 0
        try:
            while chunk := stream.read(1024 * 1024):
                if not isinstance(chunk, (bytes, bytearray)):
                    raise SourceError(name or "source", "stream must be opened in binary mode")
                spool.write(chunk)
                size += len(chunk)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return cls(name=name, size=size, spool=spool)

    # -- reading --------------------------------------------------------------------------------------

    @property
    def local_path(self) -> Path | None:
        """The file on local disk holding exactly this content, if there is one (lets storage copy it
        with the operating system instead of through Python)."""
        return self._path

    def open(self) -> BinaryIO:
        """A fresh binary reader positioned at the start. The caller closes it."""
        if self._path is not None:
            return open(self._path, "rb")
        if self._data is not None:
            return io.BytesIO(self._data)
        assert self._spool is not None
        self._spool.seek(0)
        return io.BufferedReader(_Unclosable(self._spool))

    def head(self, size: int = HEAD_SIZE) -> bytes:
        """The first bytes, for sniffing; cached."""
        if self._head is None or len(self._head) < min(size, self.size):
            with self.open() as f:
                self._head = f.read(max(size, HEAD_SIZE))
        return self._head[:size]

    def remember_head(self, data: bytes) -> None:
        """Keep the first bytes of this content, read by someone who had them at hand anyway (storage
        reading a small file whole), so that sniffing does not open and read the source again: on 2,000
        files of 256 KiB, re-reading the heads was most of the enrichment's time."""
        if self._head is None:
            self._head = bytes(data[:HEAD_SIZE])

    def forget_head(self) -> None:
        """Drop the cached head (`head` reads it again if asked). An ingest holds its whole batch of
        contents until it commits: 2,000 heads of 64 KiB kept ~128 MB alive (the ingest's peak RSS went
        from 368 to 245 MiB once they were dropped after enrichment)."""
        self._head = None

    def check_unchanged(self) -> None:
        """Raise if a local source file changed since this Content was made (it was being written)."""
        if self._path is None or self.stat is None:
            return
        try:
            st = self._path.stat()
        except OSError:
            raise ContentMismatch(f"{self.name}: the file disappeared while it was being ingested") from None
        if (st.st_size, st.st_mtime_ns) != (self.stat.st_size, self.stat.st_mtime_ns):
            raise ContentMismatch(f"{self.name}: the file changed while it was being ingested; try again")

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()

    def __repr__(self) -> str:
        return f"<Content {self.name!r} {self.size} bytes>"


class _Unclosable(io.RawIOBase):
    """A view of the shared spool that the reader may close without closing the spool."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()
