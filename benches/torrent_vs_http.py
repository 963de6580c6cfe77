"""One file from one local libtorrent seeder vs the same file over HTTP from the local mirror.

    .venv/bin/python -m benches.torrent_vs_http --size-mib 1024

Prints one line per transport (seconds, MB/s) and their ratio. Everything lives in /dev/shm when
there is one, so the figure is the programs', not the disk's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.torrent_peers import LOOPBACK_ENV, TorrentKind, magnet_of, make_torrent, seeding

from benches.bench_download import scratch_dir
from ed_extractor.demo.mirror import start_mirror

NAME = "payload.bin"


def fetch(source: str, dest: Path, env: dict[str, str]) -> float:
    """Seconds ``ed-extractor fetch SOURCE`` takes in a fresh process (it must succeed)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "ed_extractor", "fetch", source, "--dest", str(dest), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    elapsed = time.perf_counter() - started
    outcome = json.loads(result.stdout.splitlines()[0]) if result.stdout else {}
    if result.returncode != 0 or outcome.get("status") != "downloaded":
        raise SystemExit(f"fetch {source} failed: {result.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    """Run both transports once and print the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--kind", choices=["v1", "v2", "hybrid"], default="hybrid")
    args = parser.parse_args()
    kind: TorrentKind = args.kind
    root = scratch_dir()
    try:
        seed = root / "seed"
        seed.mkdir()
        payload = seed / NAME
        with payload.open("wb") as file:
            for _ in range(args.size_mib):
                file.write(os.urandom(1 << 20))
        size = payload.stat().st_size
        metainfo = make_torrent(payload, kind)
        with seeding(metainfo, seed) as seeder:
            torrent_s = fetch(
                magnet_of(metainfo, NAME),
                root / "via-torrent",
                {**LOOPBACK_ENV, "ED_EXTRACTOR_BT_PEERS": seeder.endpoint},
            )
        shutil.rmtree(root / "via-torrent")
        with start_mirror(seed) as mirror:
            http_s = fetch(mirror.url(NAME), root / "via-http", {})
        for label, seconds in (("bittorrent (1 seeder)", torrent_s), ("http (mirror)", http_s)):
            print(f"{label:<24} {seconds:7.2f} s  {size / seconds / 1e6:8.1f} MB/s")
        print(f"ratio bittorrent / http: {torrent_s / http_s:.2f}  ({args.size_mib} MiB, {kind})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
