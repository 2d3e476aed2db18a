"""Contract tests and fixtures for backend authors.

Subclass the contract classes in your own test suite and provide the factory fixture they name::

    from assetry.testing import BlobStoreContract, CatalogContract

    class TestMyStorage(BlobStoreContract):
        @pytest.fixture
        def make_blob_store(self, tmp_path):
            return lambda algorithm: MyBlobStore(tmp_path, algorithm=algorithm)

    class TestMyCatalog(CatalogContract):
        @pytest.fixture
        def make_catalog(self, tmp_path):
            def make(dimension=4, *, metric="cosine", name="main"):
                return MyCatalog(tmp_path / name, dimension, metric)
            return make

Every test is then run against your backend, as fsspec's abstract suites are reused by s3fs.
"""

from __future__ import annotations

from assetry._testing.catalog import CatalogContract, make_asset
from assetry._testing.storage import BlobStoreContract

__all__ = ["BlobStoreContract", "CatalogContract", "make_asset"]
