"""Contract tests and fixtures for backend authors.

Subclass the contract classes in your own test suite and provide the fixture they name::

    from assetry.testing import BlobStoreContract

    class TestMyStorage(BlobStoreContract):
        @pytest.fixture
        def blob_store(self, tmp_path):
            return MyBlobStore(...)

Every test is then run against your backend, as fsspec's abstract suites are reused by s3fs.
"""

from __future__ import annotations

from assetry._testing.catalog import CatalogContract, make_asset
from assetry._testing.storage import BlobStoreContract

__all__ = ["BlobStoreContract", "CatalogContract", "make_asset"]
