"""A whole store on S3 (a moto server), configured only by URL and options as a user would: blobs and
catalog in a bucket, the Python API and the command line, presigned URLs, and credentials kept out of
output, logs and errors."""

from __future__ import annotations

import json
import logging
import re
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import assetry
from assetry import _convert
from assetry.cli import cli
from assetry.config import config_from_dict
from assetry.errors import ConfigError, NotSupported
from assetry_lancedb.options import LanceOptions
from tests.s3.helpers import KEY, S3, SECRET

pytestmark = pytest.mark.s3


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def config(s3: S3, tmp_path: Path) -> Path:
    return s3.write_config(tmp_path / "assetry.toml")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    for i in range(4):
        (directory / f"img{i}.png").write_bytes(f"pixels of image {i} ".encode() * 100)
    (directory / "copy.png").write_bytes(b"pixels of image 0 " * 100)
    return directory


def test_store_on_s3_end_to_end(s3: S3, config: Path, images: Path) -> None:
    with assetry.open(config) as store:
        assert store.blobs.describe() == f"s3://{s3.bucket}/store/blobs"
        report = store.add_many([images], prompt="a lighthouse at dusk", tags=["sea"])
        assert report.added == 5
        assert report.blobs_written == 4, "the copy shares its original's blob"
        assets = {a.label: a for a in report.assets}
        first = assets["img0.png"]
        assert first.digest is not None
        assert store.read(first.id) == b"pixels of image 0 " * 100
        assert store.blobs.read_range(first.digest, 7, 8) == b"of image"

        # One object per distinct content under the configured prefix; nothing staged elsewhere.
        assert len(s3.objects("store/blobs/")) == 4
        assert not s3.objects("store/tmp/")

        hits = store.search("lighthouse")
        assert {h.asset.id for h in hits} == {a.id for a in report.assets}
        assert store.find(tags=["sea"]).total == 5

        url = store.url(first.id, expires=300)
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == b"pixels of image 0 " * 100

        # Deleting the copy keeps the shared blob; deleting the original too frees it.
        store.delete(assets["copy.png"].id)
        assert store.blobs.has(first.digest)
        assert store.delete(first.id).blobs_deleted == 1
        assert not store.blobs.has(first.digest)
        assert len(s3.objects("store/blobs/")) == 3

        # Quota GC evicts until the stored bytes fit, and removes the evicted blobs from the bucket.
        gc = store.gc(quota=2000)
        assert gc.after <= 2000
        assert gc.evicted
        live = set(store.catalog.iter_digests())
        assert {digest for digest, _ in store.blobs.iter_blobs()} == live
        assert len(s3.objects("store/blobs/")) == len(live)


def test_a_second_store_sees_the_first_stores_commits(config: Path) -> None:
    with assetry.open(config) as writer, assetry.open(config) as reader:
        assert reader.find().total == 0
        added = writer.add(b"made by the writer", label="w.txt", tags=["shared"])
        assert reader.get(added.id).label == "w.txt"
        assert reader.read(added.id) == b"made by the writer"
        assert [a.id for a in reader.find(tags=["shared"]).items] == [added.id]
        writer.update(added.id, add_tags=["edited"])
        assert "edited" in reader.get(added.id).tags


def test_store_config_through_open_arguments(s3: S3) -> None:
    with assetry.open(**s3.store_config("args")) as store:
        asset = store.add(b"configured by arguments", label="a.txt")
        assert store.read(asset.id) == b"configured by arguments"
    assert len(s3.objects("args/blobs/")) == 1
    assert s3.objects("args/catalog/")


def test_store_root_on_s3_holds_blobs_and_catalog(s3: S3) -> None:
    """``[store] root = "s3://..."``: blobs under ``<root>/blobs/``, the catalog under ``<root>/catalog/``."""
    settings = {
        "storage": {"options": s3.storage_options()},
        "catalog": {"options": {"storage_options": s3.lance_options()}},
        "vectors": {"dimension": 8},
    }
    with assetry.open(root=s3.url("team"), **settings) as store:
        asset = store.add(b"rooted in the bucket", label="r.txt")
        assert store.read(asset.id) == b"rooted in the bucket"
    keys = s3.objects("team/")
    assert sum(key.startswith("team/blobs/") for key in keys) == 1
    assert any(key.startswith("team/catalog/assets.lance/") for key in keys)
    assert all(key.startswith(("team/blobs/", "team/catalog/")) for key in keys)


def test_credentials_and_endpoint_from_the_environment_reach_both_clients(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No options at all in the configuration: s3fs (botocore) and LanceDB both read the standard AWS
    variables, so credentials and endpoint are given once."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with assetry.open(root=s3.url("env"), vectors={"dimension": 8}) as store:
        asset = store.add(b"configured by environment", label="e.txt")
        assert store.read(asset.id) == b"configured by environment"
    assert sum(key.startswith("env/blobs/") for key in s3.objects("env/")) == 1
    assert s3.objects("env/catalog/")


def test_url_needs_a_backend_that_can_sign(tmp_path: Path) -> None:
    with assetry.open(root=tmp_path / "local", vectors={"dimension": 8}) as store:
        asset = store.add(b"on local disk", label="x.txt")
        with pytest.raises(NotSupported, match="cannot sign"):
            store.url(asset.id)


def test_the_configuration_examples_in_the_s3_page_are_valid() -> None:
    """Every TOML example of docs/s3.md parses and passes validation, the LanceDB options included."""
    page = (Path(__file__).parents[2] / "docs" / "s3.md").read_text()
    examples = re.findall(r"```toml\n(.*?)```", page, re.DOTALL)
    assert len(examples) >= 2
    for example in examples:
        raw = tomllib.loads(example)
        config = config_from_dict(raw)
        assert config.storage_url.startswith("s3://")
        assert config.catalog_url.startswith("s3://")
        options = _convert.structure(config.catalog.options, LanceOptions, error=ConfigError)
        assert options.storage_options


# -- the command line ----------------------------------------------------------------------------------------


def test_cli_url_prints_a_url_that_downloads(config: Path, images: Path) -> None:
    added = run("--config", str(config), "add", str(images / "img1.png"), "--json")
    assert added.exit_code == 0, added.output
    [asset] = json.loads(added.output)["assets"]
    result = run("--config", str(config), "url", asset["id"][:8], "--expires", "120")
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert "X-Amz-Expires=120" in url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == (images / "img1.png").read_bytes()


def test_cli_url_on_local_disk_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("local")
    assert run("--root", str(tmp_path / "local"), "add", str(tmp_path / "a.txt")).exit_code == 0
    listed = json.loads(run("--root", str(tmp_path / "local"), "ls", "--json").output)["items"]
    result = CliRunner().invoke(cli, ["--root", str(tmp_path / "local"), "url", listed[0]["id"]])
    assert result.exit_code == 1
    assert "cannot sign download URLs" in result.output
    assert "Traceback" not in result.output


def test_cli_config_redacts_credentials(s3: S3, config: Path) -> None:
    for args in (["config"], ["config", "--json"]):
        result = run("--config", str(config), *args)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
        assert s3.endpoint in result.output, "non-secret options are shown"
    data = json.loads(run("--config", str(config), "config", "--json").output)
    assert data["storage"]["options"]["secret"] == "***"
    assert data["catalog"]["options"]["storage_options"]["aws_secret_access_key"] == "***"


def test_cli_error_from_a_missing_bucket_is_one_line_without_credentials(s3: S3, tmp_path: Path) -> None:
    config = s3.write_config(tmp_path / "assetry.toml")
    config.write_text(config.read_text().replace(f"s3://{s3.bucket}/", "s3://no-such-bucket/"))
    (tmp_path / "a.txt").write_text("x")
    result = CliRunner().invoke(cli, ["--config", str(config), "add", str(tmp_path / "a.txt")])
    assert result.exit_code == 1
    assert "catalog.url: cannot open the catalog" in result.output
    assert "NoSuchBucket" in result.output
    assert SECRET not in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_blob_bucket_is_a_clear_error(s3: S3) -> None:
    settings = s3.store_config("store")
    settings["storage"]["url"] = "s3://no-such-bucket/blobs"
    with assetry.open(**settings) as store, pytest.raises(Exception) as info:  # noqa: PT011
        store.add(b"x", label="x.txt")
    assert "s3://no-such-bucket/blobs: cannot store a blob" in str(info.value)
    assert "bucket does not exist" in str(info.value)
    assert SECRET not in str(info.value)
    assert not isinstance(info.value, ConfigError)


def test_no_secret_in_logs(s3: S3, config: Path, images: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every logger at DEBUG, assetry's and the libraries' it drives (s3fs, botocore, LanceDB)."""
    caplog.set_level(logging.DEBUG)
    with assetry.open(config) as store:
        report = store.add_many([images])
        store.read(report.assets[0].id)
        store.url(report.assets[0].id)
        store.search("image")
        store.gc(quota=1000)
        store.stats()
    assert caplog.records, "logging was captured"
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()


def test_unchanged_files_are_not_uploaded_or_read_again(
    s3: S3, config: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The digest cache with S3 storage: a known file costs one existence check, no read and no upload;
    # a file whose object was removed behind the store's back is uploaded again.
    from assetry import digest_cache

    monkeypatch.setattr(digest_cache, "RACY_MARGIN_NS", 50_000_000)
    time.sleep(0.1)
    with assetry.open(config) as store:
        first = store.add_many([images])
        again = store.add_many([images])
        assert (again.duplicates, again.files_unread, again.blobs_written) == (5, 5, 0)

        lost = next(a for a in first.assets if a.label == "img1.png")
        assert lost.digest is not None
        key = next(k for k in s3.objects("store/blobs/") if k.endswith(lost.digest.split(":")[1]))
        s3.client().delete_object(Bucket=s3.bucket, Key=key)
        third = store.add_many([images / "img1.png"], label="img1-again.png")
        assert (third.files_unread, third.blobs_written) == (0, 1)
        assert store.read(third.assets[0]) == store.read(lost) == b"pixels of image 1 " * 100
