"""Content sources: re-openable whatever the caller gave, bounded memory, clear errors."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetry.content import SPOOL_MEMORY, Content
from assetry.digests import digest_bytes, digest_stream, split_digest
from assetry.errors import ContentMismatch, SourceError, ValidationError


class OneShot(io.RawIOBase):
    """A stream that can be read once and cannot seek, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@given(st.binary(max_size=5000))
def test_every_source_kind_reads_back_the_same_bytes(data: bytes) -> None:
    for content in (Content.of(data), Content.of(io.BytesIO(data)), Content.of(OneShot(data))):
        assert content.size == len(data)
        for _ in range(2):  # re-openable
            with content.open() as f:
                assert f.read() == data
        assert content.head(10) == data[:10]
        content.close()


def test_path_source(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    content = Content.of(path)
    assert content.name == "a.bin"
    assert content.local_path == path.resolve()
    content.check_unchanged()
    path.write_bytes(b"abcd")
    with pytest.raises(ContentMismatch, match="a.bin: the file changed"):
        content.check_unchanged()
    path.unlink()
    with pytest.raises(ContentMismatch, match="disappeared"):
        content.check_unchanged()


def test_large_stream_spills_to_disk() -> None:
    data = os.urandom(SPOOL_MEMORY + 1024)
    content = Content.of(OneShot(data), name="big.bin")
    assert content._spool is not None
    assert content._spool._rolled  # type: ignore[attr-defined]  # on disk, not in memory
    with content.open() as f:
        assert digest_stream(f) == (digest_bytes(data), len(data))
    content.close()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (Path("/definitely/not/here.png"), "here.png: no such file"),
        (Path("/"), "is a directory"),
        (Path("/dev/null"), "is not a regular file"),
        (12345, "cannot ingest a int"),
        (io.StringIO("text"), "binary mode"),
    ],
)
def test_bad_sources(source: object, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        Content.of(source)  # type: ignore[arg-type]


def test_digest_strings_name_their_algorithm() -> None:
    digest = digest_bytes(b"x")
    assert digest.startswith("blake3:")
    assert split_digest(digest)[0] == "blake3"
    assert (
        digest_bytes(b"x", "sha256")
        == "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    )
    with pytest.raises(ValidationError):
        split_digest("md5-abc")
