"""The gzip check's inflaters side by side on a Spansh-like dump: wall and CPU seconds, ratios.

    .venv/bin/python -m benches.gzip_inflaters --scale-mb 200 --rounds 3
    .venv/bin/python -m benches.gzip_inflaters --root /dev/shm/isal-demo   (an existing mirror)

Generates the demo mirror (``python -m ed_extractor.demo generate``, zlib level 1) on tmpfs unless
``--root`` names one, and a copy of it re-compressed at zlib's level 6 (what gzip(1), pigz and
Python's gzip write by default). Then, for each, round by round, it checks every ``*.json.gz``
(in file order, 1 MiB reads, one verified download after another) with each candidate in a fresh
process: the native ``GzipVerifier`` on ISA-L (its default) and on zlib-rs, the pure-Python one
(ISA-L through ``isal``), and the command-line tools present (``igzip -d``, ``pigz -d``,
``gzip -d``; output to /dev/null). A verifier is timed inside its process (the import left out),
a tool as its whole process. Prints the median of the rounds and each candidate's speed-up over
the native zlib-rs check, in wall and in CPU time.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

_SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
_BASELINE = "native zlib-rs"
# Run in a child: check each file named on the command line, print wall and CPU seconds.
_VERIFY_CHILD = """\
import json, sys, time
from ed_extractor.services.file_transfer.regimes.gzip import GzipCheck, IsalGzipVerifier
from ed_extractor import _native
kind, paths = sys.argv[1], sys.argv[2:]
def new_verifier():
    if kind == "python":
        return IsalGzipVerifier()
    return _native.GzipVerifier(inflater=kind)
buffer = bytearray(1 << 20)
wall, cpu, text = time.perf_counter(), time.process_time(), 0
for path in paths:
    check = GzipCheck(path, new_verifier())
    with open(path, "rb", buffering=0) as file:
        while n := file.readinto(buffer):
            check.feed(memoryview(buffer)[:n])
    text += check.finish().uncompressed_bytes
print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu, text]))
"""
_VERIFIERS = {"native ISA-L": "isal", _BASELINE: "zlib-rs", "python (isal)": "python"}
_LEVEL6 = 6
_TOOLS = {
    "igzip -d": ["igzip", "-d", "-c"],
    "pigz -d": ["pigz", "-d", "-c"],
    "gzip -d": ["gzip", "-dc"],
}


@dataclass
class Timing:
    """One candidate's run over every file: wall and CPU seconds."""

    wall_s: float
    cpu_s: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_verifier(kind: str, paths: list[Path], text_bytes: int) -> Timing:
    out = subprocess.run(
        [sys.executable, "-c", _VERIFY_CHILD, kind, *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall_s, cpu_s, text = json.loads(out)
    if text != text_bytes:
        raise SystemExit(f"{kind}: inflated {text} bytes, expected {text_bytes}")
    return Timing(wall_s, cpu_s)


def _run_tool(command: list[str], paths: list[Path]) -> Timing:
    cpu_before, wall = _children_cpu(), time.perf_counter()
    with open("/dev/null", "wb") as sink:
        for path in paths:
            subprocess.run([*command, str(path)], check=True, stdout=sink)
    return Timing(time.perf_counter() - wall, _children_cpu() - cpu_before)


def _recompress(paths: list[Path], folder: Path, level: int) -> list[Path]:
    """``paths`` inflated and deflated again at zlib ``level`` into ``folder``, streaming."""
    folder.mkdir(exist_ok=True)
    copies = []
    for path in paths:
        copy = folder / path.name
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        deflater = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        with path.open("rb") as source, copy.open("wb") as target:
            while chunk := source.read(1 << 20):
                target.write(deflater.compress(inflater.decompress(chunk)))
            target.write(deflater.flush())
        copies.append(copy)
    return copies


def _mirror(args: argparse.Namespace) -> tuple[Path, bool]:
    """The mirror to check, and whether this run generated it (and so removes it)."""
    if args.root is not None:
        return args.root, False
    root = Path(tempfile.mkdtemp(prefix="ed-gzip-inflaters-", dir=_SCRATCH))
    generate = [sys.executable, "-m", "ed_extractor.demo", "generate", "--root", str(root)]
    subprocess.run([*generate, "--scale-mb", str(args.scale_mb)], check=True)
    return root, True


def _text_bytes(root: Path, paths: list[Path]) -> int:
    """The uncompressed size of ``paths`` from the mirror's listing (checked against each run)."""
    listing = json.loads((root / ".mirror.json").read_text())
    sizes = {entry["name"]: entry["uncompressed_bytes"] for entry in listing["files"]}
    return sum(sizes[path.name] for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="an existing demo mirror (else generated)")
    parser.add_argument("--scale-mb", type=int, default=200, help="size of a generated mirror")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root, generated = _mirror(args)
    scratch = Path(tempfile.mkdtemp(prefix="ed-gzip-inflaters-", dir=_SCRATCH))
    try:
        paths = sorted(root.glob("*.json.gz"))
        text_bytes = _text_bytes(root, paths)
        tools = {name: cmd for name, cmd in _TOOLS.items() if shutil.which(cmd[0])}
        level6 = _recompress(paths, scratch / "level6", _LEVEL6)
        for title, files in (("as generated (zlib level 1)", paths), ("zlib level 6", level6)):
            timings: dict[str, list[Timing]] = {name: [] for name in [*_VERIFIERS, *tools]}
            for _ in range(args.rounds):
                for name, kind in _VERIFIERS.items():
                    timings[name].append(_run_verifier(kind, files, text_bytes))
                for name, command in tools.items():
                    timings[name].append(_run_tool(command, files))
            gzip_bytes = sum(path.stat().st_size for path in files)
            print(f"{title}: {len(files)} files, {gzip_bytes / 1e6:.1f} MB gzip, ", end="")
            _print_table(timings, text_bytes, args.rounds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if generated:
            shutil.rmtree(root, ignore_errors=True)


def _print_table(timings: dict[str, list[Timing]], text_bytes: int, rounds: int) -> None:
    medians = {
        name: Timing(
            statistics.median(t.wall_s for t in runs), statistics.median(t.cpu_s for t in runs)
        )
        for name, runs in timings.items()
    }
    base = medians[_BASELINE]
    print(f"{text_bytes / 1e6:.1f} MB text; median of {rounds} rounds")
    print(
        f"{'inflater':18} {'wall s':>8} {'CPU s':>8} {'text GB/s':>10} "
        f"{'speed-up (wall, CPU) vs ' + _BASELINE:>36}"
    )
    for name, median in medians.items():
        print(
            f"{name:18} {median.wall_s:8.3f} {median.cpu_s:8.3f} "
            f"{text_bytes / median.wall_s / 1e9:10.3f} "
            f"{base.wall_s / median.wall_s:27.2f}x {base.cpu_s / median.cpu_s:6.2f}x"
        )


if __name__ == "__main__":
    main()
