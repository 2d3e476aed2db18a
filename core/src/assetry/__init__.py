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
    "Store",
    "ValidationError",
    "hookimpl",
    "open",
]

from assetry.store import Store, open  # noqa: E402 - after hookimpl, which plugins import
