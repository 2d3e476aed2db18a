"""Content whose reader does something halfway through, shared by the storage tests (local, memory, S3):
to look at the store in the middle of a write, to change the source, or to fail like a disk would."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from assetry.content import Content


class ChangingReader(io.RawIOBase):
    """Reads ``data`` at most ``chunk`` bytes at a time, calling ``at_midpoint`` once when half of it has
    been handed out."""

    def __init__(self, data: bytes, at_midpoint: Callable[[], None], *, chunk: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk
        self._at_midpoint: Callable[[], None] | None = at_midpoint

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._at_midpoint is not None and self._pos >= len(self._data) // 2:
            callback, self._at_midpoint = self._at_midpoint, None
            callback()
        n = min(len(buffer), len(self._data) - self._pos, self._chunk)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class InstrumentedContent(Content):
    """In-memory content whose ``on_open``-th reader calls ``at_midpoint`` halfway through."""

    def __init__(
        self,
        data: bytes,
        at_midpoint: Callable[[], None],
        *,
        on_open: int = 1,
        chunk: int = 256 * 1024,
        buffered: bool = False,
    ) -> None:
        super().__init__(name="instrumented.bin", size=len(data), data=data)
        self._payload = data
        self._at_midpoint = at_midpoint
        self._on_open = on_open
        self._chunk = chunk
        self._buffered = buffered
        self.opens = 0

    def open(self) -> Any:
        self.opens += 1
        if self.opens == self._on_open:
            reader = ChangingReader(self._payload, self._at_midpoint, chunk=self._chunk)
            return io.BufferedReader(reader) if self._buffered else reader
        return super().open()


class FlippingContent(Content):
    """Hashes as ``data`` on the first read, then reads back bytes of the same length with the last one
    flipped (a file rewritten in place within the same timestamp tick)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(name="x.bin", size=len(data), data=data)
        self._first = data
        self._altered = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.opens = 0

    def open(self) -> Any:
        self.opens += 1
        return io.BytesIO(self._first if self.opens == 1 else self._altered)
