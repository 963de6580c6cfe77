#!/usr/bin/env python3
"""Time `ed-extractor verify` over one large file against sha256sum, openssl and b3sum, cache warm.

    .venv/bin/python scripts/bench-verify.py [--size-mib 2048] [--rounds 5]     (make bench-verify)

Writes a file of pseudo-random bytes in /dev/shm (tmpfs: the page cache is the storage, so the
disk does not set the pace), records it in a manifest the way a download would (SHA-256 and
BLAKE3), then runs each command ``--rounds`` times and prints the best wall time, the throughput
and each command's speed relative to sha256sum. The verify commands are whole processes, start-up
included, like the others. b3sum comes from crates.io (``cargo install b3sum``) when it is not on
the PATH; without cargo or the network its column is skipped with the reason.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import blake3

from ed_extractor.manifest import ManifestRecord, ManifestStore

MIB = 1 << 20
NAME = "galaxy.json.gz"


def write_payload(path: Path, size: int) -> None:
    """``size`` pseudo-random bytes (a 16 MiB block repeated: hashing does not care)."""
    block = random.Random(0xB3).randbytes(16 * MIB)
    with path.open("wb") as file:
        remaining = size
        while remaining:
            remaining -= file.write(block[: min(remaining, len(block))])


def digests_of(path: Path) -> tuple[str, str]:
    """(sha256, blake3) of the file, by sha256sum and the blake3 package."""
    sha256 = subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return sha256, hasher.hexdigest()


def record(folder: Path, path: Path) -> Path:
    """Record ``path`` in ``folder``'s manifest as a download would; return the manifest."""
    sha256, b3 = digests_of(path)
    manifest = folder / "manifest.sqlite3"
    with ManifestStore(manifest) as store:
        store.put(
            ManifestRecord(
                name=path.name, url=f"https://example.invalid/{path.name}",
                final_url=f"https://example.invalid/{path.name}", path=str(path),
                bytes=path.stat().st_size, sha256=sha256, blake3=b3, regime="binary",
                mime_type="application/octet-stream", downloaded_at=datetime.now(UTC),
            ),
            elapsed_s=0.0, bytes_transferred=0,
        )  # fmt: skip
    return manifest


def find_b3sum() -> tuple[str | None, str]:
    """The b3sum binary, installing it from crates.io if needed; else (None, why not)."""
    found = shutil.which("b3sum") or shutil.which("b3sum", path=str(Path.home() / ".cargo/bin"))
    if found:
        return found, ""
    cargo = shutil.which("cargo") or shutil.which("cargo", path=str(Path.home() / ".cargo/bin"))
    if cargo is None:
        return None, "b3sum is not installed and there is no cargo to install it from crates.io"
    print("installing b3sum from crates.io (cargo install b3sum --locked)...", file=sys.stderr)
    result = subprocess.run(
        [cargo, "install", "b3sum", "--locked", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"cargo install b3sum failed: {last}"
    return shutil.which("b3sum", path=str(Path.home() / ".cargo/bin")), ""


def best_of(command: list[str], rounds: int, env: dict[str, str]) -> float:
    """The best wall time of ``rounds`` runs; every run must exit 0."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, env=env, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="ed-bench-verify-", dir=shm if shm.is_dir() else None))
    try:
        path = folder / NAME
        write_payload(path, args.size_mib * MIB)
        manifest = record(folder, path)
        b3sum, why_not = find_b3sum()
        cli = [sys.executable, "-m", "ed_extractor", "verify", "--manifest", str(manifest)]
        openssl = shutil.which("openssl")
        commands = {
            "sha256sum": ["sha256sum", str(path)],
            # coreutils' own SHA-256 code (Debian builds it without OpenSSL); openssl's uses SHA-NI
            "openssl dgst -sha256": [openssl, "dgst", "-sha256", str(path)] if openssl else None,
            "b3sum": [b3sum, str(path)] if b3sum else None,
            "ed-extractor verify": [*cli, "--json"],
            "ed-extractor verify --algo sha256": [*cli, "--json", "--algo", "sha256"],
        }
        env = {**os.environ, "ED_EXTRACTOR_NATIVE": "1"}
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm
        size = path.stat().st_size
        print(f"{size / MIB:.0f} MiB in {folder} (page cache warm), best of {args.rounds} runs, "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'command':36} {'seconds':>8} {'GB/s':>7} {'vs sha256sum':>13}")
        baseline = None
        for label, command in commands.items():
            if command is None:
                print(f"{label:36} skipped: {why_not if label == 'b3sum' else 'not installed'}")
                continue
            seconds = best_of(command, args.rounds, env)
            baseline = baseline or seconds
            print(f"{label:36} {seconds:8.3f} {size / seconds / 1e9:7.2f} "
                  f"{baseline / seconds:12.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
