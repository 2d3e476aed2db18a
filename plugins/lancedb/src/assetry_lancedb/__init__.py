"""assetry-lancedb: the assetry catalog in LanceDB (metadata rows, scalar filters, full-text and vector
search, usage counters).

`LanceCatalog` lives in `assetry_lancedb.catalog`; importing it imports LanceDB.
"""

from __future__ import annotations

from assetry_lancedb._deferred import defer_rest_client
from assetry_lancedb.options import LanceOptions

# Here, before any module of this package imports LanceDB (see `assetry_lancedb._deferred`).
defer_rest_client()

__all__ = ["LanceOptions"]
