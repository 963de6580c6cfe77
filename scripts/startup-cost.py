#!/usr/bin/env python3
"""Measure the start-up of ed-extractor's light commands: wall time (min and median) and modules."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 7


def wall_times(args: list[str]) -> list[float]:
    """Seconds of ``RUNS`` fresh ``ed-extractor ARGS`` processes."""
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ed_extractor", *args], capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def modules_imported(args: list[str]) -> int:
    """How many modules ``python -X importtime`` reports for ``ed-extractor ARGS``."""
    command = [sys.executable, "-X", "importtime", "-m", "ed_extractor", *args]
    report = subprocess.run(command, capture_output=True, text=True).stderr
    return sum(1 for line in report.splitlines() if line.startswith("import time:")) - 1


def main() -> None:
    """Print one line per command."""
    with tempfile.TemporaryDirectory() as dest:
        commands = {
            "--version": ["--version"],
            "probe (refused)": ["probe", "http://127.0.0.1:9/x.json.gz"],
            "manifest (empty)": ["manifest", "--dest", dest],
        }
        for name, args in commands.items():
            times = wall_times(args)
            print(
                f"{name:18} min {min(times) * 1000:5.0f} ms  "
                f"median {statistics.median(times) * 1000:5.0f} ms  "
                f"modules {modules_imported(args)}"
            )


if __name__ == "__main__":
    main()
