"""assetry plugin: content-addressed blob storage on any fsspec filesystem."""

from __future__ import annotations

from assetry_fsspec.storage import FsspecBlobStore

__all__ = ["FsspecBlobStore"]
