"""The moto S3 server's coordinates and the options that reach it, shared by the S3 tests and their worker
processes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

KEY = "assetry-test-key-id"
SECRET = "assetry-FAKE-secret-8c1f6e2d9b"
"""A recognisable fake secret: tests assert it never shows up in output, logs or errors."""
REGION = "us-east-1"
BUCKET = "assetry-test"


@attrs.frozen
class S3:
    """One test's bucket on the moto server, and the options that reach it."""

    endpoint: str
    bucket: str

    def url(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{path}".rstrip("/")

    def storage_options(self, **extra: Any) -> dict[str, Any]:
        """``[storage.options]`` for the fsspec backend (s3fs). No region: moto then refuses to create
        buckets through s3fs, and the default is right for it."""
        return {"key": KEY, "secret": SECRET, "endpoint_url": self.endpoint, **extra}

    def lance_options(self, **extra: str) -> dict[str, str]:
        """``[catalog.options.storage_options]`` for LanceDB."""
        return {
            "aws_endpoint": self.endpoint,
            "allow_http": "true",
            "aws_access_key_id": KEY,
            "aws_secret_access_key": SECRET,
            "aws_region": REGION,
            **extra,
        }

    def store_config(self, prefix: str = "store") -> dict[str, Any]:
        """`assetry.open` overrides putting blobs and catalog under ``s3://bucket/<prefix>/``."""
        return {
            "storage": {"url": self.url(f"{prefix}/blobs"), "options": self.storage_options()},
            "catalog": {
                "url": self.url(f"{prefix}/catalog"),
                "options": {"storage_options": self.lance_options()},
            },
            "vectors": {"dimension": 8},
        }

    def write_config(self, path: Path, prefix: str = "store") -> Path:
        """The same configuration as an ``assetry.toml``, as a user would write it."""
        path.write_text(
            f"""\
[storage]
url = "{self.url(f"{prefix}/blobs")}"

[storage.options]
key = "{KEY}"
secret = "{SECRET}"
endpoint_url = "{self.endpoint}"

[catalog]
url = "{self.url(f"{prefix}/catalog")}"

[catalog.options.storage_options]
aws_endpoint = "{self.endpoint}"
allow_http = "true"
aws_access_key_id = "{KEY}"
aws_secret_access_key = "{SECRET}"
aws_region = "{REGION}"

[vectors]
dimension = 8
"""
        )
        return path

    def client(self) -> Any:
        """A plain boto3 client, to look at the bucket independently of assetry."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )

    def objects(self, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` and its size."""
        found: dict[str, int] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        return found

    def pending_uploads(self) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        answer = self.client().list_multipart_uploads(Bucket=self.bucket)
        return [upload["Key"] for upload in answer.get("Uploads", [])]


@contextlib.contextmanager
def own_server(bucket: str = BUCKET) -> Iterator[S3]:
    """A moto server of the test's own, with one bucket, stopped for real when the block ends (the
    shared one serves the other tests): for failures of a server that goes away."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        own = S3(f"http://{host}:{port}", bucket)
        own.client().create_bucket(Bucket=bucket)
        yield own
    finally:
        server.stop()
