"""End-to-end download benchmark: ed-extractor against bare loops, curl and aria2c, as one table.

Each tool is a fresh process fetching a generated file from a local nginx (``sendfile on``; a
second nginx with ``limit_rate`` stands for a per-connection-limited CDN). Runs are interleaved
(run 1 of every tool, then run 2, ...) and the median is reported, with the peak RSS of the
process tree (GNU time) and a check of every output's SHA-256 against the generated file.

    python benches/e2e.py --size 1GiB --runs 3 --chart docs/bench-e2e.png

``python benches/e2e.py loop bare|naive URL [OUT]`` is the bare httpx loop and the naive loop
that the table compares against (run as children of the benchmark).
"""

from __future__ import annotations

import argparse
import hashlib
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
from typing import Literal

MiB = 1 << 20
GB = 1e9
CHUNK = 128 * 1024
PAYLOADS = ("binary", "gzip")
DESTINATIONS = ("tmpfs", "disk")
ED = ["-m", "ed_extractor", "fetch"]  # after the interpreter of --ed-python
TIME = "/usr/bin/time"  # GNU time (Debian package "time")
Output = Literal["file", "count", "digest-and-file"]


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


def _ed(connections: int | str) -> Callable[[str, Path], list[str]]:
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


def _curl_tee(url: str, out: Path) -> list[str]:
    return ["sh", "-c", 'curl -sSf "$1" | tee "$2" | sha256sum', "sh", url, str(out)]


def _curl_null(url: str, out: Path) -> list[str]:
    return ["curl", "-sSf", "-o", "/dev/null", "-w", "%{size_download}", url]


ED_PYTHON = [sys.executable]  # --ed-python: measure the ed-extractor of another environment
NATIVE, PYTHON = {"ED_EXTRACTOR_NATIVE": "1"}, {"ED_EXTRACTOR_NATIVE": "0"}
ED_1, ED_8 = "ed-extractor fetch, 1 connection", "ed-extractor fetch, 8 connections"
ED_AUTO = "ed-extractor fetch, --connections auto"
BARE, NAIVE = (
    "bare httpx iter_raw loop (no hash, no write)",
    "naive loop: iter_bytes(128 KiB), hashlib, write",
)
CURL_NULL, ARIA2 = "curl -o /dev/null", "aria2c -x8 -s8"
TOOLS: tuple[Tool, ...] = (
    Tool(ED_1, _ed(1), "digest-and-file", NATIVE),
    Tool(f"{ED_1}, ED_EXTRACTOR_NATIVE=0", _ed(1), "digest-and-file", PYTHON),
    Tool(ED_8, _ed(8), "digest-and-file", NATIVE),
    Tool(ED_AUTO, _ed("auto"), "digest-and-file", NATIVE),
    Tool(BARE, _script("bare"), "count"),
    Tool(NAIVE, _script("naive"), "digest-and-file"),
    Tool("curl | tee FILE | sha256sum", _curl_tee, "digest-and-file", needs="curl"),
    Tool(CURL_NULL, _curl_null, "count", needs="curl"),
    Tool(ARIA2, _aria2, "file", needs="aria2c"),
    Tool(ED_1, _ed(1), "digest-and-file", NATIVE, throttled=True),
    Tool(ED_8, _ed(8), "digest-and-file", NATIVE, throttled=True),
    Tool(ED_AUTO, _ed("auto"), "digest-and-file", NATIVE, throttled=True),
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
    """The runs of one row: seconds and peak RSS per run, and the first problem seen."""

    seconds: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    problem: str | None = None
    unsupported: bool = False


def sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def run_once(tool: Tool, url: str, out: Path, payload: Payload, scratch: Path) -> Measured:
    """One fresh process of ``tool``: wall time and peak RSS, then its output checked.

    The peak RSS comes from GNU time (``%M``, the largest process of the tree): a child forked
    from this Python process would report this process's own size as its peak.
    """
    env = {**os.environ, **tool.env}
    stdout_path, stderr_path, rss_path = scratch / "stdout", scratch / "stderr", scratch / "rss"
    command = [TIME, "-f", "%M", "-o", str(rss_path), *tool.argv(url, out)]
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.run(command, stdout=stdout, stderr=stderr, env=env, check=False)
        elapsed = time.perf_counter() - started
    peak_kib = int(rss_path.read_text().split()[-1])
    text = stdout_path.read_text(errors="replace")
    result = Measured([elapsed], [peak_kib])
    error = stderr_path.read_text(errors="replace").strip().splitlines()
    if process.returncode == 2 and any("connection" in line for line in error):
        result.unsupported = True  # this build of ed-extractor refuses --connections N
    elif process.returncode != 0:
        result.problem = f"FAILED (exit {process.returncode}: {(error or ['?'])[-1][:60]})"
    elif tool.output == "count":
        if text.split()[-1:] != [str(payload.bytes)]:
            result.problem = f"WRONG size ({text.strip()[:20]!r})"
    else:
        if tool.output == "digest-and-file" and payload.sha256 not in text:
            result.problem = "WRONG sha256 reported"
        if not out.is_file() or sha256_file(out) != payload.sha256:
            result.problem = "WRONG file (sha256 differs)"
    return result


def measure(
    tools: Sequence[Tool], urls: tuple[str, str], payload: Payload, dest: Path, runs: int
) -> list[Measured]:
    """Every tool ``runs`` times, interleaved, each into an emptied ``dest``."""
    results = [Measured() for _ in tools]
    for _ in range(runs):
        for tool, result in zip(tools, results, strict=True):
            if result.unsupported or result.problem:
                continue
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            url = f"{urls[tool.throttled]}/{payload.name}"
            once = run_once(tool, url, dest / payload.name, payload, dest.parent)
            result.seconds += once.seconds
            result.rss_kib += once.rss_kib
            result.problem, result.unsupported = once.problem, once.unsupported
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
    def seconds(self) -> float | None:
        ok = not (self.measured.unsupported or self.measured.problem)
        return statistics.median(self.measured.seconds) if ok else None

    @property
    def gbps(self) -> float | None:
        return None if self.seconds is None else self.payload.bytes / self.seconds / GB

    def cells(self) -> list[str]:
        server = "limit_rate per conn" if self.tool.throttled else "unthrottled"
        head = [self.scenario, server, self.tool.label]
        if self.measured.unsupported:
            return [*head, "n/a (not supported by this build)", "", "", ""]
        rss = f"{max(self.measured.rss_kib) / 1024:.0f}" if self.measured.rss_kib else ""
        if self.seconds is None:
            return [*head, str(self.measured.problem), "", rss, "no"]
        return [*head, f"{self.seconds:.2f}", f"{self.gbps:.3f}", rss, "ok"]


HEADER = ["payload, destination", "server", "tool", "seconds", "GB/s", "peak RSS MiB", "sha256"]


def table(rows: Sequence[Row]) -> str:
    """The rows as one Markdown table (readable on a terminal too)."""
    lines = [HEADER, ["---"] * len(HEADER)] + [row.cells() for row in rows]
    return "\n".join(
        "| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines
    )


def ratios(rows: Sequence[Row]) -> list[str]:
    """The ratios the targets are stated in, per scenario (throughput ratios; wall for aria2c)."""

    def find(scenario: str, label: str, throttled: bool) -> float | None:
        for row in rows:
            if (row.scenario, row.tool.label, row.tool.throttled) == (scenario, label, throttled):
                return row.seconds
        return None

    def ratio(numerator: float | None, denominator: float | None) -> str:
        return (
            "n/a" if numerator is None or denominator is None else f"{numerator / denominator:.2f}x"
        )

    out = []
    for scenario in dict.fromkeys(row.scenario for row in rows):
        s1, s8 = find(scenario, ED_1, False), find(scenario, ED_8, False)
        t1, t8 = find(scenario, ED_1, True), find(scenario, ED_8, True)
        sa, ta = find(scenario, ED_AUTO, False), find(scenario, ED_AUTO, True)
        bare, naive = find(scenario, BARE, False), find(scenario, NAIVE, False)
        devnull, aria = find(scenario, CURL_NULL, False), find(scenario, ARIA2, True)
        out.append(
            f"{scenario}: 1-conn vs bare httpx {ratio(bare, s1)} (target >= 0.9x), "
            f"vs naive {ratio(naive, s1)} (>= 1.5x); throttled 8-conn vs own 1-conn "
            f"{ratio(t1, t8)} (>= 7x), wall vs aria2c -x8 {ratio(t8, aria)} (<= 1.05x); "
            f"unthrottled 8-conn vs curl -o /dev/null {ratio(devnull, s8)} (>= 0.6x); "
            f"auto: unthrottled vs 1-conn {ratio(s1, sa)}, vs 8-conn {ratio(s8, sa)}; "
            f"throttled vs 8-conn {ratio(t8, ta)}, wall vs aria2c -x8 {ratio(ta, aria)}"
        )
    return out


def chart(rows: Sequence[Row], path: Path, title: str) -> None:
    """Draw the throughput of every row, one panel per scenario, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    fig, axes = plt.subplots(
        len(scenarios), 1, figsize=(10, 3.6 * len(scenarios)), squeeze=False, sharex=True
    )
    measured = [row.gbps for row in rows if row.gbps is not None]
    low, high = min(measured, default=1e-3) / 2, max(measured, default=1.0) * 4
    for axis, scenario in zip(axes[:, 0], scenarios, strict=True):
        mine = [row for row in rows if row.scenario == scenario][::-1]
        labels = [f"{r.tool.label}{'  [limit_rate]' if r.tool.throttled else ''}" for r in mine]
        values = [r.gbps or 0.0 for r in mine]
        colours = ["#d62728" if r.tool.label.startswith("ed-") else "#1f77b4" for r in mine]
        bars = axis.barh(labels, values, color=colours)
        for bar, row in zip(bars, mine, strict=True):
            if row.gbps is None:
                note, x = row.cells()[3], low * 1.1
            else:
                note, x = f"{row.gbps:.3f} GB/s, {row.seconds:.2f} s", row.gbps * 1.05
            axis.text(x, bar.get_y() + 0.4, note, fontsize=7, va="center")
        axis.set_xscale("log")
        axis.set_xlim(low, high)
        axis.set_title(scenario, fontsize=10)
        axis.tick_params(axis="y", labelsize=7)
    axes[-1, 0].set_xlabel("throughput, GB/s (log scale; median of the runs)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, as ``loop ...``, one of the Python loops it measures)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["loop"]:
        return loop(args[1], args[2], args[3] if len(args) > 3 else None)
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
    parser.add_argument("--chart", type=Path, default=Path("docs/bench-e2e.png"))
    parser.add_argument(
        "--ed-python",
        default=sys.executable,
        help="interpreter whose ed-extractor is measured (default: this one)",
    )
    options = parser.parse_args(args)
    ED_PYTHON[0] = options.ed_python
    needed = {TIME, *(t.needs for t in TOOLS if t.needs)}
    missing = sorted(need for need in needed if shutil.which(need) is None)
    if missing:
        parser.error(f"missing {', '.join(missing)} (scripts/setup-system.sh installs them)")
    throttled_size = min(options.throttled_size, options.size)

    rows: list[Row] = []
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
            slow = (
                full
                if throttled_size == options.size
                else (make_payload(kind, throttled_size, www, "throttled"))
            )
            for where in options.destinations:
                dest = (scratch if where == "tmpfs" else on_disk) / "dest"
                scenario = f"{kind} {human(options.size)}, {where}"
                print(f"measuring {scenario} ...", file=sys.stderr, flush=True)
                for payload, tools in (
                    (full, [t for t in TOOLS if not t.throttled]),
                    (slow, [t for t in TOOLS if t.throttled]),
                ):
                    measured = measure(tools, urls, payload, dest, options.runs)
                    rows += [
                        Row(scenario, t, payload, m) for t, m in zip(tools, measured, strict=True)
                    ]
            for payload in {full, slow}:
                (www / payload.name).unlink()

    title = (
        f"ed-extractor end to end: median of {options.runs} interleaved runs, fresh processes, "
        f"local nginx (sendfile on); limit_rate rows: nginx limit_rate {options.limit_rate} "
        f"per connection, {human(throttled_size)}"
    )
    print(title)
    print(table(rows))
    print()
    print("\n".join(ratios(rows)))
    chart(rows, options.chart, title)
    print(f"chart: {options.chart}")
    wrong = [row for row in rows if row.measured.problem]
    for row in wrong:
        print(f"{row.scenario}: {row.tool.label}: {row.measured.problem}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
