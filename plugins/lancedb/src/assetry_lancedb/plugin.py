"""The ``lancedb`` catalog backend registration.

LanceDB itself is imported only when a catalog is opened, so listing plugins or running commands that
never touch the catalog stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assetry import hookimpl
from assetry.backends import CatalogBackend, CatalogSpec
from assetry_lancedb.options import LanceOptions

if TYPE_CHECKING:
    from assetry_lancedb.catalog import LanceCatalog


def open_catalog(spec: CatalogSpec) -> LanceCatalog:
    from assetry_lancedb.catalog import LanceCatalog

    return LanceCatalog(spec)


@hookimpl
def assetry_catalog_backends() -> list[CatalogBackend]:
    return [
        CatalogBackend(
            name="lancedb",
            factory=open_catalog,
            options_type=LanceOptions,
            preload=("assetry_lancedb.catalog",),
            description="Catalog, full-text and vector search in LanceDB (local directory or s3://).",
        )
    ]
