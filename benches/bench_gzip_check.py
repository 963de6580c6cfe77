"""Benchmark of the gzip check on one thread: native (ISA-L; zlib-rs) against ISA-L in Python."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from tests.backends import BACKENDS, backend_module, gzip_verifier

from benches.conftest import ThroughputTable
from ed_extractor.demo.generator import generate_dump
from ed_extractor.services.file_transfer.base import ContentSummary
from ed_extractor.services.file_transfer.regimes.gzip import GzipCheck, GzipVerifier

CHUNK = 128 * 1024
BENCH_SYSTEMS = 40_000  # about 40 MB of gzip (150 MB of JSON) per round
SMOKE_SYSTEMS = 1_000  # the ordinary test run executes the benchmark once, on a small dump
ROUNDS = 5
ZLIB_RS = "native zlib-rs"  # the native verifier on its other inflater
# The demo's level (fast to generate), and gzip(1)'s, pigz's and Python's default.
LEVELS = [1, 6]


def new_verifier(backend: str) -> Callable[[], GzipVerifier]:
    """The gzip verifier of ``backend``, or the native one inflating with zlib-rs."""
    if backend == ZLIB_RS:
        native: Callable[..., GzipVerifier] = backend_module("native").GzipVerifier
        return partial(native, inflater="zlib-rs")
    return gzip_verifier(backend)


@pytest.fixture(scope="module", params=LEVELS, ids=[f"level{level}" for level in LEVELS])
def dump(
    pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> Iterator[tuple[bytes, int]]:
    """A generated galaxy dump in memory, deflated at the level asked: (gzip bytes, records)."""
    disabled = pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption(
        "benchmark_enable"
    )
    root = Path(tempfile.mkdtemp(prefix="ed-bench-"))
    try:
        systems = SMOKE_SYSTEMS if disabled else BENCH_SYSTEMS
        stats = generate_dump(
            root / "galaxy.json.gz",
            systems=systems,
            seed=11,
            populated=False,
            stations=False,
            compresslevel=request.param,
        )
        yield (root / "galaxy.json.gz").read_bytes(), stats.records
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("backend", [*BACKENDS, ZLIB_RS])
@pytest.mark.benchmark(group="gzip-check")
def test_gzip_check(
    benchmark: Any,
    backend: str,
    dump: tuple[bytes, int],
    throughput_table: ThroughputTable,
    request: pytest.FixtureRequest,
) -> None:
    body, records = dump
    new = new_verifier(backend)
    pieces = [body[offset : offset + CHUNK] for offset in range(0, len(body), CHUNK)]

    def check_all() -> ContentSummary:
        check = GzipCheck("bench", new())
        for piece in pieces:
            check.feed(piece)
        return check.finish()

    summary = benchmark.pedantic(check_all, rounds=ROUNDS, warmup_rounds=1)
    assert summary.records == records
    level = request.node.callspec.params["dump"]
    what = "GzipCheck.feed" if level == LEVELS[0] else f"GzipCheck.feed, level {level}"
    throughput_table.record(benchmark, what, backend, len(body))
