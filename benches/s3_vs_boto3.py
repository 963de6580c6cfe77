"""An S3 object from a local SeaweedFS: ed-extractor fetch against boto3's download_file + SHA-256.

    python -m benches.s3_vs_boto3 --size-mib 256 --runs 3

Starts SeaweedFS (tests/seaweedfs.py) with its data on tmpfs, uploads an object of random bytes
in 8 MiB parts (tests/test_s3.py's ``upload``), then times fresh processes, interleaved, each
into an emptied folder on tmpfs: ``ed-extractor fetch s3://... --connections 1|auto|8`` and
boto3's ``download_file`` (s3transfer, ``max_concurrency=10``: the engine of ``aws s3 cp``)
followed by a hashlib SHA-256 pass over the file, as ed-extractor hashes what it stores. Prints
the wall and CPU seconds (medians; user+sys of the process tree, GNU time), the peak RSS, the
bytes read back, a check of every output's SHA-256, and each fetch's ratios against boto3.

``python -m benches.s3_vs_boto3 boto3 ENDPOINT s3://BUCKET/KEY OUT`` is the boto3 child.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.seaweedfs import seaweedfs
from tests.test_s3 import BUCKET, environment, upload

from benches.e2e import (
    ED_1,
    ED_8,
    ED_AUTO,
    JSON_LOGS,
    READ_BACK_NOTE,
    Payload,
    Row,
    Tool,
    ed_argv,
    measure,
    ratio_text,
    sha256_file,
    table,
)

MiB = 1 << 20
KEY = "galaxy.bin"
BOTO3 = "boto3 download_file (s3transfer, max_concurrency=10) + hashlib SHA-256"
BOTO3_CONCURRENCY = 10


def boto3_download(endpoint: str, url: str, out: str) -> int:
    """Download ``url`` with boto3's ``download_file``, then print the file's SHA-256."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    from ed_extractor.services.s3.location import parse_s3_url

    location = parse_s3_url(url)
    client = boto3.client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
    )  # credentials and region from the environment, as the fetches get them
    config = TransferConfig(max_concurrency=BOTO3_CONCURRENCY)
    client.download_file(location.bucket, location.key, out, Config=config)
    print(sha256_file(Path(out)))
    return 0


def _boto3(endpoint: str) -> Callable[[str, Path], list[str]]:
    return lambda url, out: [sys.executable, "-m", "benches.s3_vs_boto3", "boto3", endpoint,
                             url, str(out)]  # fmt: skip


def tools(endpoint: str) -> list[Tool]:
    """ed-extractor on 1, auto and 8 connections, and boto3, all with the same environment."""
    env = environment(endpoint, ED_EXTRACTOR_NATIVE="1", **JSON_LOGS)
    fetches: list[tuple[str, int | str]] = [(ED_1, 1), (ED_AUTO, "auto"), (ED_8, 8)]
    return [
        *(Tool(label, ed_argv(n), "digest-and-file", env) for label, n in fetches),
        Tool(BOTO3, _boto3(endpoint), "digest-and-file", env),
    ]


def ratios(rows: Sequence[Row]) -> list[str]:
    """Each fetch against boto3: wall time (target <= 1.00x) and CPU seconds."""
    boto3 = next(row for row in rows if row.tool.label == BOTO3)
    return [
        f"{row.tool.label}: wall vs boto3 {ratio_text(row.seconds, boto3.seconds)} (<= 1.00x), "
        f"CPU vs boto3 {ratio_text(row.cpu_seconds, boto3.cpu_seconds)}"
        for row in rows
        if row is not boto3
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Start SeaweedFS, upload, measure, print the table and the ratios."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["boto3"]:
        return boto3_download(*args[1:4])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="runs per tool (median reported)")
    parser.add_argument("--scratch", type=Path, default=Path("/dev/shm"), help="tmpfs folder")
    options = parser.parse_args(args)
    scratch = Path(tempfile.mkdtemp(prefix="ed-s3-", dir=options.scratch))
    try:
        with seaweedfs(scratch / "seaweedfs") as server:
            server.client().create_bucket(Bucket=BUCKET)
            body = os.urandom(options.size_mib * MiB)
            payload = Payload(KEY, len(body), hashlib.sha256(body).hexdigest())
            upload(server, KEY, body, parts=True, part=options.part_mib * MiB)
            del body
            print("measuring ...", file=sys.stderr, flush=True)
            rows = measure_rows(server.endpoint, payload, scratch / "dest", options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"s3://{BUCKET}/{KEY} from a local SeaweedFS: {options.size_mib} MiB in "
        f"{options.part_mib} MiB parts, median of {options.runs} interleaved runs, fresh "
        f"processes, into tmpfs"
    )
    print(table(rows))
    print()
    print(READ_BACK_NOTE)
    print()
    print("\n".join(ratios(rows)))
    wrong = [row for row in rows if row.measured.problem]
    for row in wrong:
        print(f"{row.tool.label}: {row.measured.problem}", file=sys.stderr)
    return 1 if wrong else 0


def measure_rows(
    endpoint: str, payload: Payload, dest: Path, options: argparse.Namespace
) -> list[Row]:
    """Every tool ``--runs`` times, interleaved, as rows of the e2e table."""
    measured_tools = tools(endpoint)
    urls = (f"s3://{BUCKET}", f"s3://{BUCKET}")  # (unthrottled, throttled): no throttled rows
    results = measure(measured_tools, urls, dest, payload, dest, options.runs)
    scenario = f"s3 {options.size_mib} MiB ({options.part_mib} MiB parts), tmpfs"
    pairs = zip(measured_tools, results, strict=True)
    return [Row(scenario, tool, payload, result) for tool, result in pairs]


if __name__ == "__main__":
    sys.exit(main())
