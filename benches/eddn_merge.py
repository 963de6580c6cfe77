"""Messages per second and peak RSS of ``eddn merge`` over two replicas' generated hour of EDDN.

    .venv/bin/python -m benches.eddn_merge --rate 45 --minutes 60
    .venv/bin/python -m benches.eddn_merge --rate 450 --minutes 60

Generates one hour (or ``--minutes``) of relay traffic at ``--rate`` messages/s over all schemas
(journal 60 %, commodity 25 %, three others 15 %; 1-3 KB each, gateway timestamps with up to
50 ms of disorder), as two replicas received it (each misses a different 5 % of it), writes both
replicas' hour files as the recorder does, then runs ``ed-extractor eddn merge`` in a fresh process
and prints its time, messages/s (lines read) and peak RSS (getrusage of the child), and checks
that every generated message is in the merged files exactly once.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ed_extractor.pipeline.gzip_lines import GzipLineFile

HOUR = "2026-12-03T07"
SCHEMAS = [("journal-1", 60), ("commodity-3", 25), ("fsssignaldiscovered-1", 7),
           ("navroute-1", 5), ("approachsettlement-1", 3)]  # fmt: skip
_PEAK_CHILD = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stderr.write(done.stderr if done.returncode else '')\n"
    "print(done.stdout, end='')\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def message(n: int, at: float, rng: random.Random) -> dict[str, Any]:
    """Message ``n``, received at ``at`` seconds into the hour: 1-3 KB of EDDN-shaped JSON."""
    stamp = at + rng.uniform(-0.05, 0)  # the gateway stamped it a little earlier
    minute, second = divmod(stamp, 60)
    return {
        "$schemaRef": "https://eddn.edcd.io/schemas/x/1",
        "header": {
            "uploaderID": f"{rng.getrandbits(160):040x}",
            "softwareName": "E:D Market Connector [Windows]",
            "softwareVersion": "5.12.1",
            "gatewayTimestamp": f"{HOUR}:{int(minute):02d}:{second:09.6f}Z",
        },
        "message": {
            "n": n,
            "event": "FSDJump",
            "StarSystem": f"Col 285 Sector {rng.getrandbits(24):06X} d{n}",
            "items": [
                {"name": f"item{i}", "price": rng.randrange(100_000)}
                for i in range(rng.randrange(15, 60))
            ],
        },
    }


def generate(dest: Path, rate: float, seconds: int, seed: int = 19) -> int:
    """Write both replicas' hour files; return how many distinct messages there are."""
    rng = random.Random(seed)
    names = [name for name, _ in SCHEMAS]
    weights = [weight for _, weight in SCHEMAS]
    files = {
        (replica, name): GzipLineFile(
            dest / "eddn" / "_replicas" / replica / name / f"{HOUR}.jsonl.gz"
        )
        for replica in ("a", "b")
        for name in names
    }
    count = int(rate * seconds)
    missed = {"a": range(count // 10, count // 10 + count // 20),
              "b": range(count // 2, count // 2 + count // 20)}  # fmt: skip
    for n in range(count):
        line = json.dumps(message(n, n / rate, rng), separators=(",", ":")).encode()
        schema = rng.choices(names, weights)[0]
        for replica in ("a", "b"):
            if n not in missed[replica]:
                files[replica, schema].write_line(line)
    for file in files.values():
        file.close()
    return count


def check(dest: Path, count: int) -> None:
    seen: set[int] = set()
    lines = 0
    for path in (dest / "eddn").glob(f"*/{HOUR}.jsonl.gz"):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            seen.add(json.loads(line)["message"]["n"])
            lines += 1
    if lines != count or seen != set(range(count)):
        sys.exit(f"merged {lines} lines, {len(seen)} distinct; expected {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=45.0, help="messages/s over all schemas")
    parser.add_argument("--minutes", type=float, default=60.0, help="of traffic (one hour)")
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the files")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ed-bench-merge-", dir=options.scratch))
    try:
        started = time.monotonic()
        count = generate(root, options.rate, int(options.minutes * 60))
        generated = time.monotonic() - started
        size = sum(p.stat().st_size for p in (root / "eddn").rglob("*.jsonl.gz"))
        command = [sys.executable, "-m", "ed_extractor", "eddn", "merge", "--dest", str(root),
                   "--json"]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, *command],
                              capture_output=True, text=True, check=True)  # fmt: skip
        elapsed = time.monotonic() - started
        *results, peak_kib = done.stdout.splitlines()
        read = sum(json.loads(line)["messages"] + json.loads(line)["duplicates"]
                   for line in results)  # fmt: skip
        check(root, count)
        print(
            f"rate {options.rate:g}/s, {options.minutes:g} min: {count} messages, "
            f"{read} replica lines ({size / 2**20:.0f} MiB gzip), generated in {generated:.0f} s"
        )
        print(
            f"merge: {elapsed:.1f} s, {read / elapsed:,.0f} lines/s "
            f"({count / elapsed:,.0f} messages/s), peak RSS {int(peak_kib) / 1024:.0f} MiB"
        )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
