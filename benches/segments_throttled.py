"""Segmented download speed-up: 1 vs N connections from a local nginx limited per connection.

    .venv/bin/python -m benches.segments_throttled --size-mib 512 --limit-rate 20m --connections 8

Generates a random file on tmpfs, serves it with nginx (``limit_rate`` per connection), fetches it
with ``ed-extractor fetch --connections 1`` and then ``N`` (fresh processes), and prints the time of
each (the source's ``elapsed_s``, start-up excluded, and the wall time) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ed_extractor.demo.mirror import start_mirror

_SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _fetch(url: str, connections: int, dest: Path) -> tuple[float, float]:
    shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ed_extractor", "fetch", url, "--dest", str(dest), "--json",
         "--connections", str(connections)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"fetch failed: {result.stderr[-2000:]}")
    return float(json.loads(result.stdout)["elapsed_s"]), wall


def main() -> None:
    """Measure and print one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--limit-rate", default="20m", help="nginx limit_rate per connection")
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ed-segments-", dir=_SCRATCH))
    try:
        root = work / "root"
        root.mkdir()
        with (root / "big.bin").open("wb") as out:
            for _ in range(options.size_mib):
                out.write(os.urandom(1 << 20))
        with start_mirror(root, prefer="nginx", limit_rate=options.limit_rate) as served:
            url = f"{served.base_url}/big.bin"
            one, one_wall = _fetch(url, 1, work / "dest")
            many, many_wall = _fetch(url, options.connections, work / "dest")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = options.size_mib
    print(
        f"{size} MiB, nginx limit_rate {options.limit_rate}: 1 connection {one:.2f} s "
        f"({size / one:.1f} MiB/s), {options.connections} connections {many:.2f} s "
        f"({size / many:.1f} MiB/s): {one / many:.2f}x "
        f"(wall with start-up: {one_wall:.2f} s vs {many_wall:.2f} s, {one_wall / many_wall:.2f}x)"
    )


if __name__ == "__main__":
    main()
