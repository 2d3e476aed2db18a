"""The LanceDB catalog on S3 (a moto server): the catalog contract unchanged, configuration through
``[catalog.options.storage_options]``, and errors that carry no credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assetry._testing.catalog import CatalogContract, MakeCatalog, make_asset
from assetry.backends import CatalogSpec
from assetry.errors import ConfigError, StoreNotFound
from assetry.model import Filter
from assetry_lancedb.catalog import CatalogError, LanceCatalog
from assetry_lancedb.options import LanceOptions
from tests.s3.helpers import KEY, S3, SECRET, own_server

pytestmark = pytest.mark.s3


def s3_catalog(s3: S3, path: str, dimension: int = 4, metric: str = "cosine", **options: str) -> LanceCatalog:
    lance = LanceOptions(storage_options=s3.lance_options(**options))
    return LanceCatalog(CatalogSpec(s3.url(path), dimension, metric, lance))


class TestS3Catalog(CatalogContract):
    @pytest.fixture
    def make_catalog(self, s3: S3, unique: str) -> Iterator[MakeCatalog]:
        opened: list[LanceCatalog] = []

        def make(dimension: int = 4, *, metric: str = "cosine", name: str = "main") -> LanceCatalog:
            catalog = s3_catalog(s3, f"{unique}/{name}", dimension, metric)
            opened.append(catalog)
            return catalog

        yield make
        for catalog in opened:
            catalog.close()


def test_catalog_lives_under_its_url(s3: S3) -> None:
    catalog = s3_catalog(s3, "team/catalog")
    catalog.insert([make_asset()])
    tables = {key.split("/")[2] for key in s3.objects("team/catalog/")}
    assert {"assets.lance", "usage.lance", "meta.lance"} <= tables
    assert catalog.describe() == "lancedb:s3…/catalog"
    assert SECRET not in repr(catalog)


def test_a_catalog_opened_without_create_must_exist(s3: S3) -> None:
    lance = LanceOptions(storage_options=s3.lance_options())
    with pytest.raises(StoreNotFound, match="the catalog lancedb:s3…/absent does not exist"):
        LanceCatalog(CatalogSpec(s3.url("absent"), 4, "cosine", lance, create=False))
    assert s3.objects("absent/") == {}  # nothing written under it
    s3_catalog(s3, "present").close()
    LanceCatalog(CatalogSpec(s3.url("present"), 4, "cosine", lance, create=False)).close()


def test_another_instance_sees_commits_at_once(s3: S3) -> None:
    """Two handles on one S3 catalog, as two processes would hold: the default read consistency (0 s)
    makes every read check for the other's commits."""
    writer = s3_catalog(s3, "catalog")
    reader = s3_catalog(s3, "catalog")
    assert reader.count(Filter()) == 0
    assets = [make_asset() for _ in range(3)]
    writer.insert(assets)
    assert reader.count(Filter()) == 3
    assert set(reader.get_many([a.id for a in assets])) == {a.id for a in assets}
    writer.delete([assets[0].id])
    assert reader.count(Filter()) == 2


def test_missing_bucket_is_a_config_error_without_credentials(s3: S3) -> None:
    lance = LanceOptions(storage_options=s3.lance_options())
    with pytest.raises(ConfigError) as info:
        LanceCatalog(CatalogSpec("s3://no-such-bucket/catalog", 4, "cosine", lance))
    message = str(info.value)
    assert message.startswith("catalog.url: cannot open the catalog lancedb:s3…/catalog: ")
    assert "NoSuchBucket" in message
    assert SECRET not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_an_option_object_store_cannot_parse_is_blamed_on_the_options(s3: S3) -> None:
    with pytest.raises(ConfigError) as info:
        s3_catalog(s3, "catalog", allow_http="maybe")
    assert info.value.field == "catalog.options.storage_options"
    assert 'failed to parse "maybe" as boolean' in info.value.reason
    assert ".rs:" not in info.value.reason  # no path into LanceDB's Rust sources


def test_credentials_in_the_endpoint_are_redacted_from_errors(s3: S3) -> None:
    # Port 9 (discard): nothing listens, so the connection is refused at once.
    endpoint = f"http://{KEY}:{SECRET}@127.0.0.1:9"
    with pytest.raises(ConfigError) as info:
        s3_catalog(s3, "catalog", aws_endpoint=endpoint, client_max_retries="0")
    assert SECRET not in str(info.value)
    assert "***@" in str(info.value) or "127.0.0.1:9" not in str(info.value)


def test_secret_in_a_backend_error_is_redacted(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """LanceDB's own errors have not been seen to echo options; should one ever do, the catalog redacts
    it. The failure is simulated: no real request is known to produce it."""
    catalog = s3_catalog(s3, "catalog")
    catalog.insert([make_asset()])

    def leaky(*args: object, **kwargs: object) -> None:
        raise OSError(f"request failed, storage options {s3.lance_options()}")

    monkeypatch.setattr(catalog._assets, "count_rows", leaky)
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is the point of the next lines
        catalog.count(Filter())
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)
    assert info.value.__context__ is None
    monkeypatch.setattr(catalog._assets, "search", leaky)
    with pytest.raises(Exception) as info:  # noqa: PT011
        list(catalog.iter_digests())
    assert SECRET not in str(info.value)


def test_a_catalog_server_gone_after_open_is_one_catalog_error(s3: S3) -> None:
    """LanceDB raised a bare RuntimeError or ValueError with a Rust debug dump (a traceback in the CLI)
    when its storage stopped answering; now one `CatalogError` naming the catalog. The server is one of
    the test's own, stopped for real."""
    with own_server(s3.bucket) as own:
        catalog = s3_catalog(own, "catalog")
        asset = make_asset()
        catalog.insert([asset])
    for read in (lambda: catalog.count(Filter()), lambda: catalog.get_many([asset.id])):
        with pytest.raises(CatalogError, match=r"^lancedb:s3\S*/catalog: ") as info:
            read()
        assert SECRET not in str(info.value)
        assert len(str(info.value)) < 400
    catalog.close()
