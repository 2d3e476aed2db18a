"""Building the plugin manager: one per store, never at import time.

Plugins are Python distributions with an entry point in the ``assetry`` group; the built-in ones (fsspec
storage, LanceDB catalog, media enrichment) are found exactly the same way. A plugin that fails to import
is reported (`PluginManager.failures`, ``assetry plugins``), not fatal, unless the configuration needs the
backend it would have provided.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, TypeVar

import attrs
import pluggy

from assetry import hookspecs
from assetry.backends import CatalogBackend, StorageBackend
from assetry.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "assetry"


@attrs.frozen
class LoadFailure:
    name: str
    error: str


@attrs.frozen
class PluginInfo:
    """One line of ``assetry plugins``."""

    name: str
    version: str | None
    hooks: tuple[str, ...]
    status: str  # "loaded", "blocked" or "failed: <reason>"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what assetry needs to report: load failures and distribution versions."""

    def __init__(self) -> None:
        super().__init__("assetry")
        self.add_hookspecs(hookspecs)
        self.failures: list[LoadFailure] = []
        self.versions: dict[str, str] = {}
        self.blocked_names: set[str] = set()

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:
                continue
            hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, self.versions.get(name), hooks, "loaded"))
        infos += [
            PluginInfo(name, self.versions.get(name), (), "blocked") for name in sorted(self.blocked_names)
        ]
        infos += [
            PluginInfo(f.name, self.versions.get(f.name), (), f"failed: {f.error}") for f in self.failures
        ]
        return infos


def get_plugin_manager(
    *,
    block: Iterable[str] = (),
    load_entrypoints: bool = True,
    plugins: Iterable[object] = (),
) -> PluginManager:
    """A fresh manager: entry points (minus blocked names), then ``plugins`` given by the caller (tests,
    applications embedding assetry), then `check_pending` so a misspelt hook name fails loudly."""
    pm = PluginManager()
    blocked = set(block)
    for name in blocked:
        pm.set_blocked(name)
    if load_entrypoints:
        _load_entrypoints(pm, blocked)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in blocked:
            continue
        pm.register(plugin, name=name if pm.get_plugin(name) is None else None)
    pm.check_pending()
    return pm


_found: dict[tuple[tuple[str, int], ...], list[metadata.EntryPoint]] = {}
"""The entry points last found, under the import path they were found on (one entry at most)."""


def _entry_points() -> list[metadata.EntryPoint]:
    """The ``assetry`` entry points, sorted by name. Finding them reads every distribution's
    ``entry_points.txt`` (~7 ms with 230 installed, and a command opens two plugin managers), so the
    list is kept while the import path and the modification times of its directories stay the same:
    installing, upgrading or removing a distribution changes its directory's."""
    key = tuple((entry, _mtime(entry)) for entry in sys.path)
    found = _found.get(key)
    if found is None:
        found = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        _found.clear()
        _found[key] = found
    return found


def _mtime(entry: str) -> int:
    try:
        return os.stat(entry or ".").st_mtime_ns
    except OSError:
        return -1


def _load_entrypoints(pm: PluginManager, blocked: set[str]) -> None:
    seen: set[str] = set()
    for ep in _entry_points():
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        if ep.dist is not None:
            pm.versions[ep.name] = ep.dist.version
        if ep.name in blocked or ep.value.split(":")[0] in blocked:
            pm.blocked_names.add(ep.name)
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            unknown = _unknown_hooks(pm, plugin)
            if unknown:
                # `check_pending` would raise for every command; only this plugin is left out.
                pm.unregister(plugin)
                raise pluggy.PluginValidationError(
                    plugin, f"unknown hook {', '.join(unknown)} (misspelt, or for another assetry version)"
                )
        except Exception as exc:
            log.warning("plugin %s failed to load: %s: %s", ep.name, type(exc).__name__, exc)
            pm.failures.append(LoadFailure(ep.name, f"{type(exc).__name__}: {exc}"))


def _unknown_hooks(pm: PluginManager, plugin: object) -> list[str]:
    """The plugin's hook implementations with no specification, as `check_pending` finds them."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


B = TypeVar("B", StorageBackend, CatalogBackend)


def _collect(pm: PluginManager, hook_name: str, kind: type[B]) -> dict[str, tuple[B, str]]:
    """Call each implementation separately so a duplicate name can be pinned on the two plugins."""
    found: dict[str, tuple[B, str]] = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        returned = impl.function()
        if returned is not None and (isinstance(returned, kind) or not isinstance(returned, Iterable)):
            raise PluginError(
                f"plugin {impl.plugin_name} returned {returned!r} from {hook_name}; expected a list of them"
            )
        for backend in returned or ():
            if not isinstance(backend, kind):
                raise PluginError(f"plugin {impl.plugin_name} returned {backend!r} from {hook_name}")
            if backend.name in found:
                other = found[backend.name][1]
                raise PluginError(
                    f"plugins {other} and {impl.plugin_name} both register a backend named {backend.name!r}; "
                    f"block one of them ([plugins] block)"
                )
            found[backend.name] = (backend, impl.plugin_name)
    return found


def implementers(hook: Any) -> str:
    """The plugins implementing a hook, for an error about a result that cannot be pinned on one of them
    (pluggy returns the results without their plugins)."""
    return ", ".join(sorted({impl.plugin_name for impl in hook.get_hookimpls()})) or "no plugin"


def storage_backends(pm: PluginManager) -> dict[str, StorageBackend]:
    return {name: b for name, (b, _) in _collect(pm, "assetry_storage_backends", StorageBackend).items()}


def catalog_backends(pm: PluginManager) -> dict[str, CatalogBackend]:
    return {name: b for name, (b, _) in _collect(pm, "assetry_catalog_backends", CatalogBackend).items()}


def pick_backend(pm: PluginManager, available: Mapping[str, B], name: str, key: str) -> B:
    """The configured backend, or an error that says why it is missing (including load failures)."""
    if name in available:
        return available[name]
    reason = f"no installed plugin provides a {key.split('.', maxsplit=1)[0]} backend named {name!r}"
    if available:
        reason += f" (available: {', '.join(sorted(available))})"
    if pm.failures:
        reason += "; plugins that failed to load: " + "; ".join(f"{f.name} ({f.error})" for f in pm.failures)
    raise PluginError(f"{key}: {reason}")


def config_claims(pm: PluginManager) -> dict[str, type[Any]]:
    claims: dict[str, type[Any]] = {}
    for impl in pm.hook.assetry_config_sections.get_hookimpls():
        claimed = impl.function() or {}
        if not isinstance(claimed, Mapping):
            raise PluginError(
                f"plugin {impl.plugin_name} returned {claimed!r:.80} from assetry_config_sections; "
                "expected a mapping of table names to classes"
            )
        for name, cls in claimed.items():
            if name in claims:
                raise PluginError(f"two plugins claim the configuration table [{name}]")
            claims[name] = cls
    return claims
