"""A real third-party distribution (tests/plugins/assetry-tagger) is built into a wheel, installed into a
directory of its own, and discovered through its entry point in a fresh interpreter: no registration by
hand, exactly what a user's `pip install assetry-something` gets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "plugins" / "assetry-tagger"


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv")
    if uv is None:  # .ci/run and the README install uv; a bare environment may not have it
        pytest.skip("uv is needed to build the plugin wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(PLUGIN)], check=True, capture_output=True
    )
    wheel = next(out.glob("assetry_tagger-*.whl"))
    site = tmp_path_factory.mktemp("site")
    # A pure-Python wheel installs by unpacking it onto a path entry (what pip does, minus scripts).
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    assert (site / "assetry_tagger" / "__init__.py").exists()
    return site


def run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_installed_plugin_is_discovered_and_its_ingest_hook_runs(site_dir: Path, tmp_path: Path) -> None:
    script = (
        "import assetry, json\n"
        "with assetry.open(root='store', vectors={'dimension': 4}) as s:\n"
        "    a = s.add(b'x' * 10, label='small.bin')\n"
        "    b = s.add(b'y' * 4096, label='large.bin')\n"
        "    names = [n for n, p in s.plugins.list_name_plugin() if p is not None]\n"
        "    print(json.dumps({'a': list(s.get(a.id).tags), 'b': list(s.get(b.id).tags),\n"
        "                      'extra': dict(s.get(a.id).extra), 'plugins': names}))\n"
    )
    result = run(site_dir, tmp_path, "-c", script)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "assetry-tagger" in data["plugins"]
    assert data["a"] == ["tagged-by-tagger", "small"]
    assert data["b"] == ["tagged-by-tagger", "large"]
    assert data["extra"] == {"tagger": {"version": 1}}


def test_installed_plugin_adds_a_cli_command_and_is_listed(site_dir: Path, tmp_path: Path) -> None:
    result = run(site_dir, tmp_path, "-m", "assetry", "tagger-hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from assetry-tagger"
    listing = run(site_dir, tmp_path, "-m", "assetry", "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    tagger = next(p for p in json.loads(listing.stdout) if p["name"] == "assetry-tagger")
    assert tagger["version"] == "0.0.1"
    assert tagger["hooks"] == ["assetry_cli_commands", "assetry_ingest"]


def test_blocked_plugin_does_not_run(site_dir: Path, tmp_path: Path) -> None:
    script = (
        "import assetry\n"
        "with assetry.open(root='store', vectors={'dimension': 4}) as s:\n"
        "    print(list(s.add(b'x' * 10, label='a.bin').tags))\n"
    )
    env_blocked = {**os.environ, "PYTHONPATH": str(site_dir), "ASSETRY_PLUGINS__BLOCK": "assetry-tagger"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env_blocked,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
