r"""One-stream download ratios: ``ed-extractor fetch`` vs a bare httpx ``iter_raw`` loop.

Serves a file of random bytes from a local nginx (``sendfile on``) on tmpfs and times, each as a
fresh process, interleaved round by round: the bare loop (what ``iter_raw`` yields, by chunk size,
and the same loop with httpcore reading more per ``recv``) and ``ed-extractor fetch`` once per
``--python LABEL=INTERPRETER`` (e.g. a build before and after a change) and backend. Prints the
median wall time and CPU time (user + system) of each and their ratios to the bare loop; on a
busy machine the CPU time is the steadier figure.

    .venv/bin/python benches/fetch_vs_httpx.py --size-mib 1024 --rounds 3 \
        --python after=.venv/bin/python --python before=/tmp/before/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ed_extractor.demo.mirror import start_mirror

NAME = "random.bin"
MIB = 1 << 20

# The bare loop: receive only, report the chunk sizes iter_raw yielded. argv: URL READ_BYTES
BARE_LOOP = """
import collections, json, sys
import httpx, httpcore
if int(sys.argv[2]):
    httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES = int(sys.argv[2])
sizes = collections.Counter()
with httpx.Client() as client, client.stream("GET", sys.argv[1]) as response:
    for chunk in response.iter_raw():
        sizes[len(chunk)] += 1
print(json.dumps(sizes.most_common(4)))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``: its wall time, CPU time and standard output (exits if it fails)."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed, _children_cpu() - cpu_before, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", action="append", default=[], metavar="LABEL=INTERPRETER")
    parser.add_argument("--read-kib", type=int, action="append", default=[], metavar="KIB",
                        help="also time the bare loop reading KIB per recv")  # fmt: skip
    parser.add_argument("--backends", default="native,python")
    args = parser.parse_args()
    interpreters = dict(item.split("=", 1) for item in args.python) or {"this": sys.executable}
    backends = args.backends.split(",")

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    root = Path(tempfile.mkdtemp(prefix="ed-fetch-bench-", dir=shm))
    try:
        served = root / "served"
        served.mkdir()
        with (served / NAME).open("wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(MIB))
        contenders: dict[str, tuple[list[str], dict[str, str]]] = {}
        with start_mirror(served, prefer="nginx") as mirror:
            url = mirror.url(NAME)
            env = dict(os.environ)
            for kib in [0, *args.read_kib]:
                label = "bare httpx iter_raw" + (f", {kib} KiB reads" if kib else "")
                contenders[label] = ([sys.executable, "-c", BARE_LOOP, url, str(kib * 1024)], env)
            for label, python in interpreters.items():
                for backend in backends:
                    dest = root / f"dest-{label}-{backend}"
                    command = [python, "-m", "ed_extractor", "fetch", url, "--dest", str(dest)]
                    native = "1" if backend == "native" else "0"
                    contenders[f"fetch {label} ({backend})"] = (
                        command,
                        {**env, "ED_EXTRACTOR_NATIVE": native},
                    )
            times: dict[str, list[float]] = {label: [] for label in contenders}
            cpu: dict[str, list[float]] = {label: [] for label in contenders}
            chunk_sizes: dict[str, str] = {}
            for _ in range(args.rounds):
                for label, (command, command_env) in contenders.items():
                    if command[1] == "-m":
                        shutil.rmtree(command[-1], ignore_errors=True)
                    elapsed, cpu_s, stdout = run(command, command_env)
                    times[label].append(elapsed)
                    cpu[label].append(cpu_s)
                    if label.startswith("bare"):
                        chunk_sizes[label] = stdout.strip()
        size = args.size_mib * MIB
        baseline = statistics.median(times["bare httpx iter_raw"])
        cpu_baseline = statistics.median(cpu["bare httpx iter_raw"])
        print(f"{args.size_mib} MiB from nginx on tmpfs, median of {args.rounds} (interleaved)")
        print(f"{'run':44} {'wall s':>7} {'GB/s':>6} {'vs bare':>8} {'CPU s':>7} {'vs bare':>8}")
        for label, samples in times.items():
            median = statistics.median(samples)
            cpu_s = statistics.median(cpu[label])
            print(f"{label:44} {median:7.2f} {size / median / 1e9:6.2f} {baseline / median:7.2f}x"
                  f" {cpu_s:7.2f} {cpu_baseline / cpu_s:7.2f}x")  # fmt: skip
        for label, sizes in chunk_sizes.items():
            pairs = ", ".join(f"{n} x {b} B" for b, n in json.loads(sizes))
            print(f"iter_raw chunk sizes ({label}): {pairs}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
