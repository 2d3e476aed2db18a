"""assetry: store, index, find, version and evict the files AI systems generate and use.

The public names are imported on first use (PEP 562): the ``assetry`` command imports this package before
it knows whether a running daemon will do the work, and must not pay for the store's imports if so.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the command's start-up counts)
if TYPE_CHECKING:
    from typing import Any

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
        StoreClosed,
        StoreNotFound,
        ValidationError,
    )
    from assetry.model import Asset, AssetDraft, Filter, Hit, Kind, Links, Page, Provenance, Status
    from assetry.store import Store, open

    hookimpl: pluggy.HookimplMarker
    """Decorator marking a plugin's hook implementations."""

_HOMES = {
    **dict.fromkeys(
        [
            "AmbiguousId",
            "AssetNotFound",
            "AssetryError",
            "BlobNotFound",
            "ConfigError",
            "ContentMismatch",
            "NotSupported",
            "PluginError",
            "SourceError",
            "StoreClosed",
            "StoreNotFound",
            "ValidationError",
        ],
        "assetry.errors",
    ),
    **dict.fromkeys(
        ["Asset", "AssetDraft", "Filter", "Hit", "Kind", "Links", "Page", "Provenance", "Status"],
        "assetry.model",
    ),
    "Store": "assetry.store",
    "open": "assetry.store",
}

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
    "StoreClosed",
    "StoreNotFound",
    "ValidationError",
    "hookimpl",
    "open",
]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        value: Any = pluggy.HookimplMarker("assetry")
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'assetry' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
