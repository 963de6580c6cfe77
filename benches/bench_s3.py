"""S3 download benchmark: a multipart object from a local SeaweedFS, 8 connections vs 1."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, seaweedfs

from benches.bench_download import scratch_dir
from benches.conftest import S3_MULTIPART, ThroughputTable

BENCH_SIZE = 256 << 20
SMOKE_SIZE = 12 << 20
PART = 8 << 20
BUCKET = "bench"
KEY = "galaxy.bin"


@pytest.fixture(scope="module")
def s3_object(pytestconfig: pytest.Config) -> Iterator[tuple[str, str, int]]:
    """A multipart object of 8 MiB parts on a fresh SeaweedFS: (endpoint, s3:// URL, size)."""
    from boto3.s3.transfer import TransferConfig

    disabled = pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption(
        "benchmark_enable"
    )
    size = SMOKE_SIZE if disabled else BENCH_SIZE
    root = scratch_dir()
    try:
        with seaweedfs(root) as server:
            client = server.client()
            client.create_bucket(Bucket=BUCKET)
            config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART)
            body = os.urandom(size)
            client.upload_fileobj(io.BytesIO(body), BUCKET, KEY, Config=config)
            del body
            yield server.endpoint, f"s3://{BUCKET}/{KEY}", size
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("connections", [1, 8])
def test_s3_download(
    benchmark: Any,
    s3_object: tuple[str, str, int],
    connections: int,
    throughput_table: ThroughputTable,
) -> None:
    endpoint, url, size = s3_object
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "ED_EXTRACTOR_S3_ENDPOINT_URL": endpoint,
    }
    command = [
        sys.executable,
        "-m",
        "ed_extractor",
        "fetch",
        url,
        "--connections",
        str(connections),
    ]

    def fresh_destination() -> tuple[tuple[Path], dict[str, Any]]:
        return (scratch_dir(),), {}

    def fetch(dest: Path) -> None:
        try:
            done = subprocess.run([*command, "--dest", str(dest)], env=env, check=False,
                                  capture_output=True, text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            assert (dest / KEY).stat().st_size == size
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    benchmark.pedantic(fetch, setup=fresh_destination, rounds=3, iterations=1)
    throughput_table.record(benchmark, S3_MULTIPART, f"{connections} conn", size)
