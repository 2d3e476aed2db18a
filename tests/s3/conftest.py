"""A real S3-compatible server for the S3 tests: moto in server mode on 127.0.0.1 (as s3fs's own suite
does), one per test process, reset and given a fresh bucket before every test.

s3fs and moto come with the ``test`` dependency group (``uv sync`` installs it). moto serves the S3
protocol (buckets, multipart, ranged GET, presigned URLs, conditional puts) but does not check signatures:
any access key and secret are accepted. A test that would need a wrong credential rejected says so and
skips rather than pretend.
"""

from __future__ import annotations

import logging
import os
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.s3.helpers import BUCKET, S3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server started for this test process."""
    # moto's request log goes through werkzeug's logger: keep it out of captured test logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """An empty moto server with one empty bucket. The environment holds only dummy AWS settings, so no
    test can reach a real account, and worker processes the test starts inherit them."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    request = urllib.request.Request(f"{s3_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    bucket = S3(s3_endpoint, BUCKET)
    bucket.client().create_bucket(Bucket=BUCKET)
    return bucket


@pytest.fixture
def unique() -> str:
    """A short unique name, for prefixes within the test's bucket."""
    return uuid.uuid4().hex[:12]
