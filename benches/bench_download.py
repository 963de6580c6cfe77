"""End-to-end download benchmarks: ed-extractor (native, hashlib, no-verify) vs curl and aria2c."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benches.conftest import ThroughputTable
from ed_extractor.demo.generator import generate_dump
from ed_extractor.demo.mirror import start_mirror

BENCH_SYSTEMS = 150_000  # about 160 MB of gzip: large enough that process start-up is noise
SMOKE_SYSTEMS = 3_000  # the ordinary test run executes each benchmark once, on a small file
NAME = "galaxy.json.gz"

TOOLS: dict[str, dict[str, Any]] = {
    "ed-extractor": {"env": {"ED_EXTRACTOR_NATIVE": "1"}},
    "ed-extractor --no-verify": {"env": {"ED_EXTRACTOR_NATIVE": "1"}, "args": ["--no-verify"]},
    "ed-extractor (hashlib)": {"env": {"ED_EXTRACTOR_NATIVE": "0"}},
    "curl": {},
    "curl + sha256sum": {},
    "aria2c": {},
}


def scratch_dir() -> Path:
    """A tmpfs folder when there is one (the benchmark measures the program, not the disk)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="ed-bench-", dir=shm if shm.is_dir() else None))


@pytest.fixture(scope="module")
def served_dump(pytestconfig: pytest.Config) -> Iterator[tuple[str, int]]:
    """A generated galaxy dump on the local mirror (nginx when installed): (URL, size)."""
    root = scratch_dir()
    disabled = pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption(
        "benchmark_enable"
    )
    systems = SMOKE_SYSTEMS if disabled else BENCH_SYSTEMS
    stats = generate_dump(root / NAME, systems=systems, seed=11, populated=False, stations=False)
    try:
        with start_mirror(root) as mirror:
            yield mirror.url(NAME), stats.bytes
    finally:
        shutil.rmtree(root, ignore_errors=True)


def command_for(tool: str, url: str, dest: Path) -> list[list[str]]:
    """The command line(s) one round of ``tool`` runs to fetch ``url`` into ``dest``."""
    target = str(dest / NAME)
    if tool.startswith("ed-extractor"):
        extra = TOOLS[tool].get("args", [])
        return [[sys.executable, "-m", "ed_extractor", "fetch", url, "--dest", str(dest), *extra]]
    if tool == "curl":
        return [["curl", "-sSf", "-o", target, url]]
    if tool == "curl + sha256sum":
        return [["curl", "-sSf", "-o", target, url], ["sha256sum", target]]
    return [["aria2c", "-q", "-x1", "--file-allocation=none", "--allow-overwrite=true",
             "-d", str(dest), "-o", NAME, url]]  # fmt: skip


@pytest.mark.parametrize("tool", list(TOOLS))
def test_download(
    benchmark: Any, served_dump: tuple[str, int], tool: str, throughput_table: ThroughputTable
) -> None:
    url, size = served_dump
    binary = "curl" if tool.startswith("curl") else tool if tool == "aria2c" else None
    if binary is not None and shutil.which(binary) is None:
        reason = f"{binary} is not installed (scripts/setup-system.sh installs it as root)"
        print(reason)
        pytest.skip(reason)
    env = {**os.environ, **TOOLS[tool].get("env", {})}

    def fresh_destination() -> tuple[tuple[Path], dict[str, Any]]:
        return (scratch_dir(),), {}

    def fetch(dest: Path) -> None:
        try:
            for command in command_for(tool, url, dest):
                subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
            assert (dest / NAME).stat().st_size == size
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    benchmark.pedantic(fetch, setup=fresh_destination, rounds=3, iterations=1)
    throughput_table.record(benchmark, "download", tool, size)
