"""The end-to-end benchmark runs at a small size, so that `make bench-e2e` cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from benches.e2e import HEADER, TOOLS, parse_size

from ed_extractor.demo.mirror import nginx_path

BENCH = Path(__file__).resolve().parent.parent / "benches" / "e2e.py"


@pytest.mark.slow
def test_the_benchmark_prints_every_row_checks_every_output_and_draws_the_chart(
    tmp_path: Path,
) -> None:
    if nginx_path() is None:
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it as root)")
    chart = tmp_path / "e2e.png"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--size", "8MiB", "--throttled-size", "2MiB", "--runs", "1",
         "--chart", str(chart), "--disk-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr  # every output's SHA-256 matched
    rows = [
        [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        for line in result.stdout.splitlines()
        if line.startswith("|")
    ]
    assert rows[0] == HEADER
    body = [tuple(row[:3]) for row in rows[2:]]
    scenarios = [
        f"{kind} 8 MiB, {where}" for kind in ("binary", "gzip") for where in ("tmpfs", "disk")
    ]
    expected = [
        (scenario, "limit_rate per conn" if tool.throttled else "unthrottled", tool.label)
        for scenario in scenarios for tool in TOOLS
    ]  # fmt: skip
    assert body == expected
    for row in rows[2:]:
        assert row[3].replace(".", "").isdigit() or row[3].startswith("n/a"), row
    assert sum("1-conn vs bare httpx" in line for line in result.stdout.splitlines()) == 4
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("8 MiB") == 8 << 20
    assert parse_size("512MB") == 512_000_000
    assert parse_size("1000") == 1000
