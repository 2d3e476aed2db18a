"""assetry: store, index, find, version and evict the files AI systems generate and use."""

from __future__ import annotations

import pluggy

from assetry.errors import (
    AmbiguousId,
    AssetNotFound,
    AssetryError,
    BlobNotFound,
    ConfigError,
    ContentMismatch,
    NotSupported,
    PluginError,
    SourceError,
    ValidationError,
)
from assetry.model import Asset, AssetDraft, Filter, Hit, Kind, Links, Page, Provenance, Status

hookimpl = pluggy.HookimplMarker("assetry")
"""Decorator marking a plugin's hook implementations."""

__all__ = [
    "AmbiguousId",
    "Asset",
    "AssetDraft",
    "AssetNotFound",
    "AssetryError",
    "BlobNotFound",
    "ConfigError",
    "ContentMismatch",
    "Filter",
    "Hit",
    "Kind",
    "Links",
    "NotSupported",
    "Page",
    "PluginError",
    "Provenance",
    "SourceError",
    "Status",
    "ValidationError",
    "hookimpl",
    "open",
]


def __getattr__(name: str) -> object:
    # `assetry.open` and `Store` pull in the orchestration layer; import it lazily so that plugins
    # importing `assetry.hookimpl` at load time do not import the store (and its imports) in a cycle.
    if name in ("open", "Store"):
        from assetry import store

        return getattr(store, name)
    raise AttributeError(name)
