"""End-to-end download benchmark: ed-extractor against bare loops, curl and aria2c, as one table.

Each tool is a fresh process fetching a generated file from a local nginx (``sendfile on``; a
second nginx with ``limit_rate`` stands for a per-connection-limited CDN). Runs are interleaved
(run 1 of every tool, then run 2, ...) and the median is reported, with the CPU seconds (user +
system of the process tree) and the peak RSS (GNU time), the bytes each ed-extractor fetch read
back (its "segmented download done" log line), and a check of every output's SHA-256 against the
generated file. The parts an ed-extractor fetch is weighed against (the bare httpx loop, hashlib
SHA-256 and ``blake3`` over the file, ``cp`` into the same folder) are rows of the same run.

    python benches/e2e.py --size 1GiB --runs 3 --chart docs/bench-e2e.png

``python benches/e2e.py loop bare|naive URL [OUT]`` is the bare httpx loop and the naive loop
that the table compares against, ``python benches/e2e.py hash sha256|blake3 FILE`` a hash over a
file (run as children of the benchmark).

The destination ``object-store`` (benches/e2e_object_store.py) adds rows that land the same file
in a local SeaweedFS and in a folder on the same filesystem, beside a ``curl | aws s3 cp -`` pipe.

The S3 comparison (ed-extractor against boto3's ``download_file`` on a local SeaweedFS) is a
separate script: ``python -m benches.s3_vs_boto3 --size-mib 256 --runs 3``; the peak RSS of
``--parallel`` is ``python -m benches.peak_rss_parallel --files 4 --size-mib 512``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MiB = 1 << 20
GB = 1e9
CHUNK = 128 * 1024
PAYLOADS = ("binary", "gzip")
OBJECT_STORE = "object-store"  # benches/e2e_object_store.py: SeaweedFS against a folder
DESTINATIONS = ("tmpfs", "disk", OBJECT_STORE)
ED = ["-m", "ed_extractor", "fetch"]  # after the interpreter of --ed-python
TIME = "/usr/bin/time"  # GNU time (Debian package "time")
Output = Literal["file", "count", "digest", "digest-and-file"]


# --- the children: the two Python loops the targets name --------------------------------------


def loop(kind: str, url: str, out: str | None) -> int:
    """Fetch ``url`` as the bare receive loop (prints bytes) or the naive loop (prints SHA-256)."""
    import httpx

    headers = {"Accept-Encoding": "identity"}
    with httpx.Client(timeout=60, headers=headers) as client, client.stream("GET", url) as r:
        r.raise_for_status()
        if kind == "bare":
            print(sum(len(chunk) for chunk in r.iter_raw()))
            return 0
        assert out is not None
        digest = hashlib.sha256()
        with open(out, "wb") as file:
            for chunk in r.iter_bytes(CHUNK):
                digest.update(chunk)
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())  # as ed-extractor does before it renames into place
    print(digest.hexdigest())
    return 0


def hash_file(algorithm: str, path: str) -> int:
    """Print a file's SHA-256 (hashlib) or BLAKE3 (``blake3``'s default: 1 thread), and size."""
    if algorithm == "sha256":
        constructor: Callable[[], Any] = hashlib.sha256
    else:
        from blake3 import blake3 as constructor  # imported only for its own row
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, constructor)
    print(digest.hexdigest(), os.path.getsize(path))
    return 0


# --- the tools ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """One row of a scenario: how to run it and what its output is checked by."""

    label: str
    argv: Callable[[str, Path], list[str]]  # (URL, output file) -> command line
    output: Output
    env: dict[str, str] = field(default_factory=dict)
    throttled: bool = False
    needs: str | None = None
    local: bool = False  # reads the served file itself (a part of a fetch), not the URL


def ed_argv(connections: int | str) -> Callable[[str, Path], list[str]]:
    def argv(url: str, out: Path) -> list[str]:
        return [
            ED_PYTHON[0],
            *ED,
            url,
            "--dest",
            str(out.parent),
            "--name",
            out.name,
            "--json",
            "--connections",
            str(connections),
        ]

    return argv


def _aria2(url: str, out: Path) -> list[str]:
    return [
        "aria2c",
        "-x8",
        "-s8",
        "-q",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "-d",
        str(out.parent),
        "-o",
        out.name,
        url,
    ]


def _script(kind: str) -> Callable[[str, Path], list[str]]:
    return lambda url, out: [sys.executable, __file__, "loop", kind, url, str(out)]


def _hash(algorithm: str) -> Callable[[str, Path], list[str]]:
    return lambda source, out: [sys.executable, __file__, "hash", algorithm, source]


def _cp(source: str, out: Path) -> list[str]:
    return ["cp", source, str(out)]


def _curl_tee(url: str, out: Path) -> list[str]:
    return ["sh", "-c", 'curl -sSf "$1" | tee "$2" | sha256sum', "sh", url, str(out)]


def _curl_null(url: str, out: Path) -> list[str]:
    return ["curl", "-sSf", "-o", "/dev/null", "-w", "%{size_download}", url]


ED_PYTHON = [sys.executable]  # --ed-python: measure the ed-extractor of another environment
JSON_LOGS = {"ED_EXTRACTOR_LOG_FORMAT": "json"}  # the read-back figure is parsed from them
NATIVE = {"ED_EXTRACTOR_NATIVE": "1", **JSON_LOGS}
PYTHON = {"ED_EXTRACTOR_NATIVE": "0", **JSON_LOGS}
ED_1, ED_8 = "ed-extractor fetch, 1 connection", "ed-extractor fetch, 8 connections"
ED_AUTO = "ed-extractor fetch, --connections auto"
BARE, NAIVE = (
    "bare httpx iter_raw loop (no hash, no write)",
    "naive loop: iter_bytes(128 KiB), hashlib, write",
)
CURL_NULL, ARIA2 = "curl -o /dev/null", "aria2c -x8 -s8"
SHA256, BLAKE3, CP = (
    "part: hashlib SHA-256 over the file",
    "part: blake3 over the file (1 thread, the package's default)",
    "part: cp FILE DEST (same folder as the fetch)",
)
PARTS = (BARE, SHA256, BLAKE3, CP)  # what a fetch's CPU is weighed against
TOOLS: tuple[Tool, ...] = (
    Tool(ED_1, ed_argv(1), "digest-and-file", NATIVE),
    Tool(f"{ED_1}, ED_EXTRACTOR_NATIVE=0", ed_argv(1), "digest-and-file", PYTHON),
    Tool(ED_8, ed_argv(8), "digest-and-file", NATIVE),
    Tool(ED_AUTO, ed_argv("auto"), "digest-and-file", NATIVE),
    Tool(BARE, _script("bare"), "count"),
    Tool(SHA256, _hash("sha256"), "digest", local=True),
    Tool(BLAKE3, _hash("blake3"), "count", local=True),
    Tool(CP, _cp, "file", local=True),
    Tool(NAIVE, _script("naive"), "digest-and-file"),
    Tool("curl | tee FILE | sha256sum", _curl_tee, "digest-and-file", needs="curl"),
    Tool(CURL_NULL, _curl_null, "count", needs="curl"),
    Tool(ARIA2, _aria2, "file", needs="aria2c"),
    Tool(ED_1, ed_argv(1), "digest-and-file", NATIVE, throttled=True),
    Tool(ED_8, ed_argv(8), "digest-and-file", NATIVE, throttled=True),
    Tool(ED_AUTO, ed_argv("auto"), "digest-and-file", NATIVE, throttled=True),
    Tool(ARIA2, _aria2, "file", throttled=True, needs="aria2c"),
)


# --- payloads and servers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """A generated file on the mirror: its name, size and digest."""

    name: str
    bytes: int
    sha256: str


def make_payload(kind: str, size: int, root: Path, tag: str) -> Payload:
    """Write ``size`` random bytes, or a gzip JSON-lines dump of about ``size``, under ``root``."""
    if kind == "binary":
        path = root / f"random-{tag}.bin"
        digest = hashlib.sha256()
        with path.open("wb") as file:
            for offset in range(0, size, 4 * MiB):
                block = os.urandom(min(4 * MiB, size - offset))
                digest.update(block)
                file.write(block)
        return Payload(path.name, size, digest.hexdigest())
    from ed_extractor.demo.generator import generate_dump

    path = root / f"galaxy-{tag}.json.gz"
    sample = generate_dump(path, systems=2000, seed=5, populated=False, stations=False)
    systems = max(1, round(size / (sample.bytes / 2000)))
    stats = generate_dump(path, systems=systems, seed=5, populated=False, stations=False)
    return Payload(path.name, stats.bytes, stats.sha256)


@contextmanager
def mirrors(root: Path, limit_rate: str) -> Iterator[tuple[str, str]]:
    """nginx serving ``root`` twice: unthrottled, and at ``limit_rate`` per connection."""
    from ed_extractor.demo.mirror import start_mirror

    with (
        start_mirror(root, prefer="nginx") as plain,
        start_mirror(root, limit_rate=limit_rate) as throttled,
    ):
        yield plain.base_url, throttled.base_url


# --- running and measuring ---------------------------------------------------------------------


@dataclass
class Measured:
    """The runs of one row: seconds, CPU s, peak RSS, bytes read back, and the first problem."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    read_back: list[int] = field(default_factory=list)  # runs that logged a segmented download
    problem: str | None = None
    unsupported: bool = False

    def add(self, once: Measured) -> None:
        """Take in one more run."""
        self.seconds += once.seconds
        self.cpu_seconds += once.cpu_seconds
        self.rss_kib += once.rss_kib
        self.read_back += once.read_back
        self.problem, self.unsupported = once.problem, once.unsupported


def sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def read_back_logged(stderr: Sequence[str]) -> list[int]:
    """The ``read_back`` of every "segmented download done" JSON log line.

    There is none for the one-connection path, which reads nothing back by construction.
    """
    found = []
    for line in stderr:
        if '"segmented download done"' in line:
            record = json.loads(line)
            found.append(int(record["read_back"]))
    return found


def output_problem(tool: Tool, stdout: str, out: Path, payload: Payload) -> str | None:
    """What is wrong with what ``tool`` printed or wrote, if anything."""
    if tool.output == "count":
        counted = stdout.split()[-1:]
        return None if counted == [str(payload.bytes)] else f"WRONG size ({stdout.strip()[:20]!r})"
    if tool.output in ("digest", "digest-and-file") and payload.sha256 not in stdout:
        return "WRONG sha256 reported"
    if tool.output != "digest" and (not out.is_file() or sha256_file(out) != payload.sha256):
        return "WRONG file (sha256 differs)"
    return None


def run_once(tool: Tool, source: str, out: Path, payload: Payload, scratch: Path) -> Measured:
    """One fresh process of ``tool``: wall time, CPU seconds and peak RSS, then its output checked.

    GNU time reports the peak RSS (``%M``, the largest process of the tree: a child forked from
    this Python process would report this process's own size as its peak) and the user and system
    seconds of the process and every descendant it waited for (``%U``, ``%S``).
    """
    env = {**os.environ, **tool.env}
    result, stdout_text, error = timed(tool.argv(source, out), env, scratch)
    if result.problem is None and not result.unsupported:  # unsupported: refuses --connections
        result.problem = output_problem(tool, stdout_text, out, payload)
        result.read_back = read_back_logged(error)
    return result


def timed(
    argv: Sequence[str], env: dict[str, str], scratch: Path
) -> tuple[Measured, str, list[str]]:
    """``argv`` run under GNU time: its measures (a failure as the problem), stdout, stderr."""
    stdout_path, stderr_path, time_path = scratch / "stdout", scratch / "stderr", scratch / "time"
    command = [TIME, "-f", "%M %U %S", "-o", str(time_path), *argv]
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.run(command, stdout=stdout, stderr=stderr, env=env, check=False)
        elapsed = time.perf_counter() - started
    peak_kib, user, system = time_path.read_text().splitlines()[-1].split()
    error = stderr_path.read_text(errors="replace").strip().splitlines()
    result = Measured([elapsed], [float(user) + float(system)], [int(peak_kib)])
    if process.returncode == 2 and any("connection" in line for line in error):
        result.unsupported = True
    elif process.returncode != 0:
        result.problem = f"FAILED (exit {process.returncode}: {(error or ['?'])[-1][:60]})"
    return result, stdout_path.read_text(errors="replace"), error


def measure(
    tools: Sequence[Tool],
    urls: tuple[str, str],
    served: Path,
    payload: Payload,
    dest: Path,
    runs: int,
) -> list[Measured]:
    """Every tool ``runs`` times, interleaved, each into an emptied ``dest``.

    The parts of a fetch (``local`` tools) read the file the mirror serves from ``served``.
    """
    results = [Measured() for _ in tools]
    for _ in range(runs):
        for tool, result in zip(tools, results, strict=True):
            if result.unsupported or result.problem:
                continue
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            url = f"{urls[tool.throttled]}/{payload.name}"
            source = str(served / payload.name) if tool.local else url
            result.add(run_once(tool, source, dest / payload.name, payload, dest.parent))
    shutil.rmtree(dest, ignore_errors=True)
    return results


# --- the table, the ratios and the chart -------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    scenario: str
    tool: Tool
    payload: Payload
    measured: Measured

    @property
    def ok(self) -> bool:
        return not (self.measured.unsupported or self.measured.problem)

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.measured.seconds) if self.ok else None

    @property
    def cpu_seconds(self) -> float | None:
        return statistics.median(self.measured.cpu_seconds) if self.ok else None

    @property
    def gbps(self) -> float | None:
        return None if self.seconds is None else self.payload.bytes / self.seconds / GB

    @property
    def read_back(self) -> str:
        """The most any run read back; ``-`` for a fetch that logged no segmented download."""
        if not self.tool.label.startswith("ed-extractor"):
            return ""
        return str(max(self.measured.read_back)) if self.measured.read_back else "-"

    def cells(self) -> list[str]:
        server = "limit_rate per conn" if self.tool.throttled else "unthrottled"
        if self.tool.local:
            server = "(local file)"
        head = [self.scenario, server, self.tool.label]
        if self.measured.unsupported:
            return [*head, "n/a (not supported by this build)", "", "", "", "", ""]
        rss = f"{max(self.measured.rss_kib) / 1024:.0f}" if self.measured.rss_kib else ""
        if self.seconds is None:
            return [*head, str(self.measured.problem), "", "", rss, "", "no"]
        figures = [f"{self.seconds:.2f}", f"{self.gbps:.3f}", f"{self.cpu_seconds:.2f}"]
        return [*head, *figures, rss, self.read_back, "ok"]


HEADER = [
    "payload, destination",
    "server",
    "tool",
    "seconds",
    "GB/s",
    "CPU s (user+sys)",
    "peak RSS MiB",
    "read back bytes",
    "sha256",
]
READ_BACK_NOTE = (
    "read back: bytes a segmented fetch read from its part file again to hash them (its log line "
    '"segmented download done"); "-": no segmented download, as on one connection, which reads '
    "nothing back by construction."
)


def table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table (readable on a terminal too)."""
    lines = [HEADER, ["---"] * len(HEADER)] + [row.cells() for row in rows]
    return "\n".join(
        "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines
    )


def ratio_text(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def _lookup(rows: Sequence[Row], scenario: str) -> Callable[[str, bool], Row | None]:
    def find(label: str, throttled: bool) -> Row | None:
        for row in rows:
            if (row.scenario, row.tool.label, row.tool.throttled) == (scenario, label, throttled):
                return row
        return None

    return find


def _seconds(row: Row | None) -> float | None:
    return None if row is None else row.seconds


def _cpu(row: Row | None) -> float | None:
    return None if row is None else row.cpu_seconds


def _parts_cpu(find: Callable[[str, bool], Row | None]) -> float | None:
    """The CPU seconds of the parts of a fetch, added up (None if one is missing)."""
    cpus = [_cpu(find(label, False)) for label in PARTS]
    return None if None in cpus else sum(c for c in cpus if c is not None)


def ratios(rows: Sequence[Row]) -> list[str]:
    """The ratios the targets are stated in, per scenario.

    Speed ratios are the other's seconds over this one's, wall-time ratios this one's seconds over
    the other's; a CPU ratio is a fetch's CPU seconds over the sum of its parts' (``PARTS``).
    """
    out = []
    for scenario in dict.fromkeys(row.scenario for row in rows):
        find = _lookup(rows, scenario)
        one, eight = find(ED_1, False), find(ED_8, False)
        s1, s8, sa = _seconds(one), _seconds(eight), _seconds(find(ED_AUTO, False))
        t1, t8, ta = (_seconds(find(label, True)) for label in (ED_1, ED_8, ED_AUTO))
        aria, parts = _seconds(find(ARIA2, True)), _parts_cpu(find)
        bare, naive = _seconds(find(BARE, False)), _seconds(find(NAIVE, False))
        devnull = _seconds(find(CURL_NULL, False))
        read_back = "n/a" if eight is None else eight.read_back
        parts_text = "n/a" if parts is None else f"{parts:.2f}"
        gzip = scenario.startswith("gzip")
        cpu1, cpu8 = ratio_text(_cpu(one), parts), ratio_text(_cpu(eight), parts)
        out.append(
            f"{scenario}: unthrottled 8-conn speed vs 1-conn {ratio_text(s1, s8)} (>= 0.95x), "
            f"8-conn read back {read_back} bytes (0); CPU 1-conn / parts {cpu1} "
            f"(<= 1.15x), CPU 8-conn / parts {cpu8} (<= 1.15x; parts: "
            f"bare httpx loop + hashlib SHA-256 + blake3 + cp = {parts_text} CPU s); "
            f"throttled 8-conn wall vs aria2c -x8 {ratio_text(t8, aria)} "
            f"(<= {'1.2' if gzip else '1.05'}x); auto: throttled wall vs 8-conn "
            f"{ratio_text(ta, t8)} (<= 1.25x), unthrottled speed vs 1-conn {ratio_text(s1, sa)} "
            f"(>= 0.95x)"
        )
        out.append(
            f"{scenario}, more: 1-conn vs bare httpx {ratio_text(bare, s1)} (>= 0.9x), "
            f"vs naive {ratio_text(naive, s1)} (>= 1.5x); throttled 8-conn vs own 1-conn "
            f"{ratio_text(t1, t8)} (>= 7x); unthrottled 8-conn vs curl -o /dev/null "
            f"{ratio_text(devnull, s8)} (>= 0.6x); auto: unthrottled vs 8-conn "
            f"{ratio_text(s8, sa)}, throttled wall vs aria2c -x8 {ratio_text(ta, aria)}"
        )
    return out


def _panel(axis: Any, rows: Sequence[Row], scenario: str, low: float) -> None:
    """One scenario's bars: throughput, with seconds and CPU seconds written beside each."""
    mine = [row for row in rows if row.scenario == scenario][::-1]
    labels = [f"{r.tool.label}{'  [limit_rate]' if r.tool.throttled else ''}" for r in mine]
    colours = ["#d62728" if r.tool.label.startswith("ed-") else "#1f77b4" for r in mine]
    bars = axis.barh(labels, [r.gbps or 0.0 for r in mine], color=colours)
    for bar, row in zip(bars, mine, strict=True):
        if row.gbps is None:
            note, x = row.cells()[3], low * 1.1
        else:
            note = f"{row.gbps:.3f} GB/s, {row.seconds:.2f} s, CPU {row.cpu_seconds:.2f} s"
            x = row.gbps * 1.05
        axis.text(x, bar.get_y() + 0.4, note, fontsize=7, va="center")
    axis.set_title(scenario, fontsize=10)
    axis.tick_params(axis="y", labelsize=7)


def chart(rows: Sequence[Row], path: Path, title: str) -> None:
    """Draw the throughput of every row, one panel per scenario, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    fig, axes = plt.subplots(
        len(scenarios), 1, figsize=(10, 4.4 * len(scenarios)), squeeze=False, sharex=True
    )
    measured = [row.gbps for row in rows if row.gbps is not None]
    low, high = min(measured, default=1e-3) / 2, max(measured, default=1.0) * 8
    for axis, scenario in zip(axes[:, 0], scenarios, strict=True):
        _panel(axis, rows, scenario, low)
        axis.set_xscale("log")
        axis.set_xlim(low, high)
    axes[-1, 0].set_xlabel(
        "throughput, GB/s (log scale; median of the runs; parts: bytes of the file per second)"
    )
    fig.suptitle(textwrap.fill(title, 110), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the command line --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``1GiB``, ``512MiB``, ``8MB``, ``1000`` -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 512MiB)")
    number, unit, binary = match.groups()
    power = " KMGT".index(unit.upper() or " ")
    return int(float(number) * (1024 if binary or not unit else 1000) ** power)


def human(size: int) -> str:
    """A size as the options spell it: ``8 MiB``, ``1 GiB``."""
    return f"{size / 1024**3:g} GiB" if size >= 1024**3 else f"{size / MiB:g} MiB"


def parse_options(args: Sequence[str]) -> argparse.Namespace:
    """The benchmark's options; an error if a tool it runs is missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument(
        "--throttled-size",
        type=parse_size,
        default=parse_size("512MiB"),
        help="file size on the throttled server (at most --size)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per tool (median reported)")
    parser.add_argument("--payloads", nargs="+", choices=PAYLOADS, default=list(PAYLOADS))
    parser.add_argument(
        "--destinations", nargs="+", choices=DESTINATIONS, default=list(DESTINATIONS)
    )
    parser.add_argument("--limit-rate", default="20m", help="nginx limit_rate of the slow server")
    parser.add_argument("--disk-dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument(
        "--aws-cli",
        default="auto",
        help="object-store rows: the aws command of the pipe row; auto: awscli from PyPI in a "
        "virtualenv of its own; none: no pipe row",
    )
    parser.add_argument("--chart", type=Path, default=Path("docs/bench-e2e.png"))
    parser.add_argument(
        "--ed-python",
        default=sys.executable,
        help="interpreter whose ed-extractor is measured (default: this one)",
    )
    options = parser.parse_args(args)
    needed = {TIME, "cp", *(t.needs for t in TOOLS if t.needs)}
    missing = sorted(need for need in needed if shutil.which(need) is None)
    if missing:
        parser.error(f"missing {', '.join(missing)} (scripts/setup-system.sh installs them)")
    options.throttled_size = min(options.throttled_size, options.size)
    return options


def run_scenarios(options: argparse.Namespace) -> list[Row]:
    """Every payload to every destination, through every tool, on one pair of mirrors."""
    rows: list[Row] = []
    folders = [where for where in options.destinations if where != OBJECT_STORE]
    if not folders:
        return rows
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="ed-e2e-", dir="/dev/shm"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        on_disk = Path(tempfile.mkdtemp(prefix="ed-e2e-", dir=options.disk_dir))
        stack.callback(shutil.rmtree, on_disk, ignore_errors=True)
        www = scratch / "www"
        www.mkdir()
        urls = stack.enter_context(mirrors(www, options.limit_rate))
        for kind in options.payloads:
            full = make_payload(kind, options.size, www, "full")
            slow = full
            if options.throttled_size != options.size:
                slow = make_payload(kind, options.throttled_size, www, "throttled")
            for where in folders:
                dest = (scratch if where == "tmpfs" else on_disk) / "dest"
                scenario = f"{kind} {human(options.size)}, {where}"
                print(f"measuring {scenario} ...", file=sys.stderr, flush=True)
                for payload, throttled in ((full, False), (slow, True)):
                    tools = [t for t in TOOLS if t.throttled == throttled]
                    measured = measure(tools, urls, www, payload, dest, options.runs)
                    pairs = zip(tools, measured, strict=True)
                    rows += [Row(scenario, tool, payload, m) for tool, m in pairs]
            for payload in {full, slow}:
                (www / payload.name).unlink()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, as ``loop ...`` or ``hash ...``, one of the children it measures)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["loop"]:
        return loop(args[1], args[2], args[3] if len(args) > 3 else None)
    if args[:1] == ["hash"]:
        return hash_file(args[1], args[2])
    options = parse_options(args)
    ED_PYTHON[0] = options.ed_python
    rows = run_scenarios(options)
    title = (
        f"ed-extractor end to end: median of {options.runs} interleaved runs, fresh processes, "
        f"local nginx (sendfile on); limit_rate rows: nginx limit_rate {options.limit_rate} "
        f"per connection, {human(options.throttled_size)}"
    )
    if rows:
        print(title)
        print(table(rows))
        print()
        print(READ_BACK_NOTE)
        print()
        print("\n".join(ratios(rows)))
        chart(rows, options.chart, title)
        print(f"chart: {options.chart}")
    wrong = [row for row in rows if row.measured.problem]
    for row in wrong:
        print(f"{row.scenario}: {row.tool.label}: {row.measured.problem}", file=sys.stderr)
    store_wrong = 0
    if OBJECT_STORE in options.destinations:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from benches.e2e_object_store import object_store_section

        lines, store_wrong = object_store_section(options, options.payloads)
        print()
        print("\n".join(lines))
    return 1 if wrong or store_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
