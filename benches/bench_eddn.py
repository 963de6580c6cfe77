"""Benchmark of the EDDN recorder: relay messages decoded, filtered and written per second."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.eddn_relay import commodity, journal, pack

from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.eddn_stream import EddnRecorder

MESSAGES = 20_000  # EDDN carries some 30-60 messages per second at its busiest
SMOKE_MESSAGES = 500  # the ordinary test run executes the benchmark once, on fewer
ROUNDS = 3


@pytest.mark.benchmark(group="eddn")
def test_eddn_recorder(benchmark: Any, pytestconfig: pytest.Config) -> None:
    enabled = pytestconfig.getoption("benchmark_enable")
    count = MESSAGES if enabled else SMOKE_MESSAGES
    raw = [pack(commodity(n) if n % 4 == 0 else journal(n)) for n in range(count)]
    hour = datetime(2026, 12, 3, 7, tzinfo=UTC)

    def setup() -> tuple[tuple[EddnRecorder, Path, ManifestStore], dict[str, Any]]:
        root = Path(tempfile.mkdtemp(prefix="ed-bench-eddn-"))
        store = ManifestStore(root / "manifest.sqlite3")
        return (EddnRecorder(root, store, "tcp://bench", clock=lambda: hour), root, store), {}

    def record(recorder: EddnRecorder, root: Path, store: ManifestStore) -> None:
        for message in raw:
            recorder.handle(message)
        recorder.close_all()
        store.close()
        shutil.rmtree(root)

    benchmark.pedantic(record, setup=setup, rounds=ROUNDS, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats:
        benchmark.extra_info["messages_per_s"] = round(count / stats.stats.min)
        print(f"\neddn recorder: {count / stats.stats.min:,.0f} messages/s (best of {ROUNDS})")
