"""assetry-lancedb: the assetry catalog in LanceDB (metadata rows, scalar filters, full-text and vector
search, usage counters).

`LanceCatalog` lives in `assetry_lancedb.catalog`; importing it imports LanceDB.
"""

from __future__ import annotations

from assetry_lancedb.options import LanceOptions

__all__ = ["LanceOptions"]
