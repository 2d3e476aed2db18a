"""Content digests. A digest string names its algorithm (``blake3:<hex>``) so the default can change later
without confusing old blobs. BLAKE3 is the default: ~7.4 GB/s against ~1.9 GB/s for SHA-256 here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import BinaryIO, Protocol

import blake3

from assetry.errors import ConfigError
from assetry.model import check_digest

CHUNK_SIZE = 1024 * 1024
"""Bytes read per step when streaming: large enough to amortise calls, small enough to bound memory."""


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def _blake3(threads: bool) -> Hasher:
    # AUTO lets the Rust side use every core on large buffers. Callers that already run hashes in
    # parallel, or copy on the other core meanwhile, ask for one thread: the threads then compete.
    return blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)


ALGORITHMS: dict[str, Callable[[bool], Hasher]] = {
    "blake3": _blake3,
    "sha256": lambda threads: hashlib.sha256(),
}
DEFAULT_ALGORITHM = "blake3"


def new_hasher(algorithm: str, *, threads: bool = True) -> Hasher:
    """A fresh hasher; ``threads=False`` keeps it on the calling thread (see `_blake3`)."""
    try:
        return ALGORITHMS[algorithm](threads)
    except KeyError:
        raise ConfigError(
            "storage.digest", f"unknown digest algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}"
        ) from None


def format_digest(algorithm: str, hexdigest: str) -> str:
    return f"{algorithm}:{hexdigest}"


def split_digest(digest: str) -> tuple[str, str]:
    """``'blake3:ab12…'`` -> ``('blake3', 'ab12…')``; raises ValidationError for anything else."""
    check_digest(digest)
    algorithm, _, hexdigest = digest.partition(":")
    return algorithm, hexdigest


def digest_stream(
    stream: BinaryIO, algorithm: str = DEFAULT_ALGORITHM, *, threads: bool = True
) -> tuple[str, int]:
    """Hash a stream to its end with bounded memory; returns (digest, size)."""
    hasher = new_hasher(algorithm, threads=threads)
    size = 0
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while n := stream.readinto(view):  # type: ignore[attr-defined]
        hasher.update(view[:n])
        size += n
    return format_digest(algorithm, hasher.hexdigest()), size


def digest_bytes(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return format_digest(algorithm, hasher.hexdigest())
