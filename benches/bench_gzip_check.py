"""Benchmark of the gzip check on one thread: the native GzipVerifier against ISA-L in Python."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.backends import BACKENDS, gzip_verifier

from benches.conftest import ThroughputTable
from ed_extractor.demo.generator import generate_dump
from ed_extractor.services.file_transfer.base import ContentSummary
from ed_extractor.services.file_transfer.regimes.gzip import GzipCheck

CHUNK = 128 * 1024
BENCH_SYSTEMS = 40_000  # about 40 MB of gzip (150 MB of JSON) per round
SMOKE_SYSTEMS = 1_000  # the ordinary test run executes the benchmark once, on a small dump
ROUNDS = 5


@pytest.fixture(scope="module")
def dump(pytestconfig: pytest.Config) -> Iterator[tuple[bytes, int]]:
    """A generated galaxy dump in memory: (gzip bytes, records)."""
    disabled = pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption(
        "benchmark_enable"
    )
    root = Path(tempfile.mkdtemp(prefix="ed-bench-"))
    try:
        systems = SMOKE_SYSTEMS if disabled else BENCH_SYSTEMS
        stats = generate_dump(
            root / "galaxy.json.gz", systems=systems, seed=11, populated=False, stations=False
        )
        yield (root / "galaxy.json.gz").read_bytes(), stats.records
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.benchmark(group="gzip-check")
def test_gzip_check(
    benchmark: Any, backend: str, dump: tuple[bytes, int], throughput_table: ThroughputTable
) -> None:
    body, records = dump
    new_verifier = gzip_verifier(backend)
    pieces = [body[offset : offset + CHUNK] for offset in range(0, len(body), CHUNK)]

    def check_all() -> ContentSummary:
        check = GzipCheck("bench", new_verifier())
        for piece in pieces:
            check.feed(piece)
        return check.finish()

    summary = benchmark.pedantic(check_all, rounds=ROUNDS, warmup_rounds=1)
    assert summary.records == records
    throughput_table.record(benchmark, "GzipCheck.feed", backend, len(body))
