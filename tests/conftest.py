"""Shared fixtures. Stores are real: local files and LanceDB on tmp_path, plugins found through their entry
points exactly as users get them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import assetry
from assetry.store import Store

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=300, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DIMENSION = 8


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's assetry.toml, environment or user data directory."""
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # the digest cache
    # Commands run as subprocesses never reach a daemon the developer started (there is none here).
    monkeypatch.setenv("ASSETRY_DAEMON_DIR", str(tmp_path / "no-daemon"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> Iterator[Store]:
    with assetry.open(root=store_root, vectors={"dimension": DIMENSION}) as s:
        yield s


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A small directory of distinct files (and one duplicate) to ingest."""
    directory = tmp_path / "files"
    (directory / "nested").mkdir(parents=True)
    for i in range(5):
        (directory / f"file{i}.txt").write_text(f"content number {i}\n" * (i + 1))
    (directory / "nested" / "deep.bin").write_bytes(bytes(range(256)) * 4)
    (directory / "nested" / "copy.txt").write_text("content number 0\n")
    (directory / ".hidden").write_text("not ingested")
    return directory


def snapshot(store: Store) -> tuple[int, list[str], list[tuple[str, int]]]:
    """What a failed operation must leave unchanged: catalog rows and stored blobs."""
    usage = store.catalog.storage_usage()
    ids = sorted(a.id for a in store.catalog.find(assetry.Filter(), order="id", limit=100_000, offset=0))
    return usage.assets, ids, sorted(store.blobs.iter_blobs())
