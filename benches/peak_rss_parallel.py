"""Peak RSS of ``fetch --parallel K`` over K random files, from a fast and a throttled local nginx.

    .venv/bin/python -m benches.peak_rss_parallel --files 4 --size-mib 512

Generates K files of random bytes on tmpfs, serves them with nginx (unthrottled, then with
``limit_rate`` per connection), fetches them all with one ``ed-extractor fetch --parallel K`` in a
fresh process each time, checks every file's bytes, and prints that process's peak RSS (getrusage).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ed_extractor.demo.mirror import start_mirror

_SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_PEAK_CHILD = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as out, open("/dev/urandom", "rb") as source:
        while size:
            step = min(size, 64 << 20)
            out.write(source.read(step))
            size -= step


def _peak_mib(urls: list[str], dest: Path, parallel: int) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    command = [sys.executable, "-m", "ed_extractor", "fetch", "--dest", str(dest),
               "--parallel", str(parallel), *urls]  # fmt: skip
    child = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *command], capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(f"fetch failed: {child.stderr[-2000:]}")
    return int(child.stdout.split()[-1]) / 1024


def main() -> None:
    """Generate, serve, fetch and print the peak RSS of each run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--limit-rate", default="20m", help="nginx limit_rate of the second run")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ed-rss-", dir=_SCRATCH))
    try:
        root, dest = scratch / "root", scratch / "dest"
        root.mkdir()
        names = [f"part-{n}.bin" for n in range(args.files)]
        for name in names:
            _write_random(root / name, args.size_mib << 20)
        for limit in (None, args.limit_rate):
            with start_mirror(root, limit_rate=limit) as mirror:
                peak = _peak_mib([f"{mirror.base_url}/{n}" for n in names], dest, args.files)
            for name in names:
                if not filecmp.cmp(root / name, dest / name, shallow=False):
                    raise SystemExit(f"{name}: stored bytes differ")
            label = "unthrottled" if limit is None else f"limit_rate {limit}"
            print(f"--parallel {args.files}, {args.files} x {args.size_mib} MiB, {label}: "
                  f"peak RSS {peak:.0f} MiB")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
