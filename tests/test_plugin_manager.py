"""The plugin manager: hermetic construction, entry points, blocking, failures, duplicate backends."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
import pytest

import assetry
from assetry import hookimpl, plugins
from assetry.backends import StorageBackend
from assetry.errors import PluginError
from assetry.plugins import get_plugin_manager, pick_backend, storage_backends


def test_hermetic_manager_has_no_plugins() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    assert [p for _, p in pm.list_name_plugin() if p is not None] == []


def test_builtin_plugins_are_found_through_entry_points() -> None:
    pm = get_plugin_manager()
    names = {name for name, p in pm.list_name_plugin() if p is not None}
    assert {"assetry-fsspec", "assetry-lancedb", "assetry-media"} <= names
    assert pm.versions["assetry-fsspec"] == metadata.version("assetry-fsspec")
    info = {i.name: i for i in pm.describe()}
    assert "assetry_storage_backends" in info["assetry-fsspec"].hooks
    assert "assetry_catalog_backends" in info["assetry-lancedb"].hooks


def test_misspelt_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def assetry_ingets(self) -> None:  # the misspelling is the point
            pass

    with pytest.raises(pluggy.PluginValidationError, match="assetry_ingets"):
        get_plugin_manager(load_entrypoints=False, plugins=[Typo()])


def test_block_by_config_and_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pm = get_plugin_manager(block=["assetry-media"])
    assert pm.get_plugin("assetry-media") is None
    assert any(i.name == "assetry-media" and i.status == "blocked" for i in pm.describe())

    monkeypatch.setenv("ASSETRY_PLUGINS__BLOCK", "assetry-media")
    with assetry.open(root=tmp_path / "s") as store:
        assert store.plugins.get_plugin("assetry-media") is None
        assert store.plugins.get_plugin("assetry-fsspec") is not None


def test_blocking_the_configured_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"storage.backend: .*'fsspec'"):
        assetry.open(root=tmp_path / "s", plugins={"block": ["assetry-fsspec"]})
    assert not (tmp_path / "s").exists()


def test_plugin_that_fails_to_import_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.entry_points

    def with_broken(**kw: Any) -> Any:
        eps = list(real(**kw))
        if kw.get("group") == "assetry":
            eps.append(metadata.EntryPoint("broken-plugin", "no_such_module_for_assetry:x", "assetry"))
        return eps

    monkeypatch.setattr(plugins.metadata, "entry_points", with_broken)
    monkeypatch.setattr(plugins, "_found", {})  # the entry points found before, kept (and restored)
    pm = get_plugin_manager()
    assert [f.name for f in pm.failures] == ["broken-plugin"]
    assert "ModuleNotFoundError" in pm.failures[0].error
    assert pm.get_plugin("assetry-fsspec") is not None  # the others still load
    # Needing a backend that is missing names the failure, so the user knows where to look.
    with pytest.raises(PluginError, match="broken-plugin"):
        pick_backend(pm, storage_backends(pm), "s3-special", "storage.backend")


def test_an_installed_plugin_with_an_unknown_hook_is_left_out_not_fatal(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A misspelt hook in an installed plugin made every command fail with pluggy's traceback, including
    `assetry plugins`; so did a plugin whose `assetry_cli_commands` raised. Each is now reported and
    left out, and the rest works."""
    (tmp_path / "typo_plugin.py").write_text(
        "from assetry import hookimpl\n\n@hookimpl\ndef assetry_ingets(draft):\n    return None\n"
    )
    (tmp_path / "broken_commands.py").write_text(
        "from assetry import hookimpl\n\n@hookimpl\ndef assetry_cli_commands(cli):\n"
        "    raise RuntimeError('no commands today')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.entry_points

    def with_extra(**kw: Any) -> Any:
        eps = list(real(**kw))
        if kw.get("group") == "assetry":
            eps.append(metadata.EntryPoint("typo-plugin", "typo_plugin", "assetry"))
            eps.append(metadata.EntryPoint("broken-commands", "broken_commands", "assetry"))
        return eps

    monkeypatch.setattr(plugins.metadata, "entry_points", with_extra)
    monkeypatch.setattr(plugins, "_found", {})
    pm = get_plugin_manager()
    assert [f.name for f in pm.failures] == ["typo-plugin"]
    assert "unknown hook assetry_ingets" in pm.failures[0].error
    assert pm.get_plugin("assetry-fsspec") is not None

    from assetry.cli import main

    monkeypatch.setenv("ASSETRY_DAEMON", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "typo-plugin" in out
    assert "failed: PluginValidationError" in out
    assert "broken-commands failed to add its commands: RuntimeError: no commands today" in caplog.text


def _fake_distribution(directory: Path, name: str) -> None:
    """A distribution with an ``assetry`` entry point, as an installer leaves it on the import path."""
    module = f"{name.replace('-', '_')}_plugin"
    (directory / f"{module}.py").write_text("from assetry import hookimpl\n")
    info = directory / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[assetry]\n{name} = {module}\n")


def test_entry_points_are_read_once_until_a_distribution_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.entry_points
    scans = []

    def counted(**kw: Any) -> Any:
        if kw.get("group") == "assetry":  # (other libraries look for their own groups meanwhile)
            scans.append(kw)
        return real(**kw)

    monkeypatch.setattr(plugins.metadata, "entry_points", counted)
    monkeypatch.setattr(plugins, "_found", {})
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = {name for name, p in get_plugin_manager().list_name_plugin() if p is not None}
    get_plugin_manager()
    assert len(scans) == 1  # the second manager reused the list
    assert "assetry-fake" not in before

    _fake_distribution(site, "assetry-fake")
    # An installer's writes land seconds after the last look; here, within one clock tick of it.
    stat = site.stat()
    os.utime(site, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    pm = get_plugin_manager()
    assert len(scans) == 2
    assert pm.get_plugin("assetry-fake") is not None
    assert pm.versions["assetry-fake"] == "1.0"

    # A new directory on the import path is looked into as well.
    other = tmp_path / "other"
    other.mkdir()
    _fake_distribution(other, "assetry-fake-two")
    monkeypatch.syspath_prepend(str(other))
    assert get_plugin_manager().get_plugin("assetry-fake-two") is not None
    assert len(scans) == 3
    for module in ("assetry_fake_plugin", "assetry_fake_two_plugin"):
        sys.modules.pop(module, None)


def test_two_plugins_with_the_same_backend_name_is_an_error() -> None:
    def factory(spec: Any) -> Any:
        raise AssertionError("never called")

    class One:
        @hookimpl
        def assetry_storage_backends(self) -> Iterable[StorageBackend]:
            return [StorageBackend("dup", factory)]

    class Two:
        @hookimpl
        def assetry_storage_backends(self) -> Iterable[StorageBackend]:
            return [StorageBackend("dup", factory)]

    pm = get_plugin_manager(load_entrypoints=False, plugins=[One(), Two()])
    with pytest.raises(PluginError, match="both register a backend named 'dup'"):
        storage_backends(pm)


def test_plugin_returning_garbage_backend_is_an_error() -> None:
    class Bad:
        @hookimpl
        def assetry_storage_backends(self) -> Iterable[object]:
            return ["not a backend"]

    pm = get_plugin_manager(load_entrypoints=False, plugins=[Bad()])
    with pytest.raises(PluginError, match="returned 'not a backend'"):
        storage_backends(pm)


def test_hooks_returning_the_wrong_shape_name_the_plugin(tmp_path: Path) -> None:
    class OneBackend:
        @hookimpl
        def assetry_storage_backends(self) -> object:
            return StorageBackend(name="one", factory=lambda spec: None)  # type: ignore[arg-type,return-value]

    with pytest.raises(PluginError, match="OneBackend returned .* expected a list"):
        storage_backends(get_plugin_manager(load_entrypoints=False, plugins=[OneBackend()]))

    class SectionsAsAList:
        @hookimpl
        def assetry_config_sections(self) -> object:
            return ["mytable"]

    with pytest.raises(PluginError, match="SectionsAsAList returned .* assetry_config_sections"):
        plugins.config_claims(get_plugin_manager(load_entrypoints=False, plugins=[SectionsAsAList()]))

    class IngestAsAList:
        @hookimpl
        def assetry_ingest(self) -> object:
            return ["tags", "x"]

    with assetry.open(root=tmp_path / "s", vectors={"dimension": 4}) as store:
        store.plugins.register(IngestAsAList(), name="ingest-as-a-list")
        with pytest.raises(PluginError, match=r"assetry_ingest must return a mapping .*ingest-as-a-list"):
            store.add(b"data", label="d")
        assert store.catalog.count(store.filter()) == 0
        assert list(store.blobs.iter_blobs()) == []


def test_each_store_has_its_own_manager(tmp_path: Path) -> None:
    with assetry.open(root=tmp_path / "a") as a, assetry.open(root=tmp_path / "b") as b:
        assert a.plugins is not b.plugins
