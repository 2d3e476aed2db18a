"""assetry plugin: blob storage on any fsspec filesystem (local disk, memory, S3 with assetry[s3])."""

from __future__ import annotations

from assetry import hookimpl
from assetry.backends import StorageBackend
from assetry_fsspec.storage import FsspecBlobStore


@hookimpl
def assetry_storage_backends() -> list[StorageBackend]:
    return [
        StorageBackend(
            name="fsspec",
            factory=FsspecBlobStore.from_spec,
            options_type=None,
            description="content-addressed blobs on local disk or any fsspec URL (s3://... with assetry[s3])",
        )
    ]
