"""Benchmark plumbing: collect each benchmark's throughput and print a compact summary table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

GB = 1e9
S3_MULTIPART = "s3 multipart"


@dataclass
class ThroughputTable:
    """Best-round throughput in GB/s, keyed by (benchmark, implementation or thread count)."""

    figures: dict[tuple[str, str], float] = field(default_factory=dict)

    def record(self, benchmark: Any, what: str, column: str, total_bytes: int) -> None:
        """Store ``total_bytes`` over the best round's time; put it in ``extra_info`` too.

        Does nothing when benchmarks are disabled (the ordinary test run executes them once).
        """
        stats = getattr(benchmark, "stats", None)
        if not stats:
            return
        best_s = stats.stats.min
        gbps = total_bytes / best_s / GB
        benchmark.extra_info.update(
            {
                "bytes_per_round": total_bytes,
                "best_GBps": round(gbps, 3),
                "median_GBps": round(total_bytes / stats.stats.median / GB, 3),
            }
        )
        self.figures[(what, column)] = gbps

    def lines(self) -> list[str]:
        """The summary table, or nothing if no benchmark ran."""
        if not self.figures:
            return []
        out = ["throughput, best round (GB/s = 1e9 bytes/s)"]
        hashing = [
            what
            for what in ("Sha256.update", "PartSink.write", "GzipCheck.feed")
            if (what, "native") in self.figures or (what, "python") in self.figures
        ]
        if hashing:
            out.append(f"{'':32} {'native':>8} {'python':>8} {'native/python':>14}")
        for what in hashing:
            native = self.figures.get((what, "native"))
            python = self.figures.get((what, "python"))
            out.append(
                f"{what + ' (128 KiB chunks)':32} {_num(native)} {_num(python)} "
                f"{_ratio(native, python):>14}"
            )
        out.extend(self._inflater_lines())
        threads = [
            i
            for i in ("native", "python")
            if any((("threads", f"{i}-{n}") in self.figures) for n in (1, 2))
        ]
        if threads:
            out.append(f"{'':32} {'1 thread':>8} {'2 threads':>10} {'2/1 (aggregate)':>16}")
        for implementation in threads:
            one = self.figures.get(("threads", f"{implementation}-1"))
            two = self.figures.get(("threads", f"{implementation}-2"))
            out.append(
                f"{'PartSink x threads, ' + implementation:32} {_num(one)} "
                f"{_num(two):>10} {_ratio(two, one):>16}"
            )
        dual = [
            implementation
            for implementation in ("native", "python")
            if (("PartSink dual hash", f"{implementation}, sha256") in self.figures)
        ]
        if dual:
            out.append(f"{'':32} {'sha256':>8} {'+blake3':>8} {'+blake3/sha256':>15}")
        for implementation in dual:
            alone = self.figures.get(("PartSink dual hash", f"{implementation}, sha256"))
            both = self.figures.get(("PartSink dual hash", f"{implementation}, sha256+blake3"))
            out.append(
                f"{'PartSink + BLAKE3, ' + implementation:32} {_num(alone)} {_num(both)} "
                f"{_ratio(both, alone):>15}"
            )
        digests = {column: v for (what, column), v in self.figures.items() if what == "digest"}
        if digests:
            hashlib_sha256 = digests.get("hashlib sha256")
            out.append(f"{'file digest (64 MiB slices)':32} {'GB/s':>8} {'vs hashlib':>10}")
            for implementation, gbps in digests.items():
                out.append(f"{implementation:32} {_num(gbps)} {_ratio(gbps, hashlib_sha256):>10}")
        downloads = {column: v for (what, column), v in self.figures.items() if what == "download"}
        if downloads:
            curl = downloads.get("curl")
            out.append(f"{'download from the local mirror':32} {'GB/s':>8} {'vs curl':>10}")
            for tool, gbps in downloads.items():
                out.append(f"{tool:32} {_num(gbps)} {_ratio(gbps, curl):>10}")
        s3 = {column: v for (what, column), v in self.figures.items() if what == S3_MULTIPART}
        if s3:
            one, eight = s3.get("1 conn"), s3.get("8 conn")
            out.append(
                f"{'s3 multipart, local SeaweedFS':32} {'1 conn':>8} {'8 conn':>8} {'8/1':>6}"
            )
            out.append(f"{'':32} {_num(one)} {_num(eight)} {_ratio(eight, one):>6}")
        return out

    def _inflater_lines(self) -> list[str]:
        """The native gzip check on ISA-L (its inflater) against zlib-rs, per compression level."""
        levels = [
            what
            for what, column in self.figures
            if what.startswith("GzipCheck.feed") and column == "native zlib-rs"
        ]
        if not levels:
            return []
        out = [f"{'native GzipCheck.feed (128 KiB)':32} {'ISA-L':>8} {'zlib-rs':>8} {'ratio':>14}"]
        for what in levels:
            isal = self.figures.get((what, "native"))
            zlib_rs = self.figures.get((what, "native zlib-rs"))
            level = what.partition(", ")[2] or "level 1"
            out.append(
                f"{'  ' + level:32} {_num(isal)} {_num(zlib_rs)} {_ratio(isal, zlib_rs):>14}"
            )
        return out


def _num(value: float | None) -> str:
    return f"{value:8.3f}" if value is not None else f"{'-':>8}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None:
        return "-"
    return f"{numerator / denominator:.2f}x"


_TABLE_KEY = pytest.StashKey[ThroughputTable]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TABLE_KEY] = ThroughputTable()


@pytest.fixture(scope="session")
def throughput_table(pytestconfig: pytest.Config) -> ThroughputTable:
    """The session's table of figures, printed at the end of the run."""
    return pytestconfig.stash[_TABLE_KEY]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash[_TABLE_KEY].lines() if _TABLE_KEY in config.stash else []
    if lines:
        terminalreporter.write_sep("-", "ed-extractor throughput")
        for line in lines:
            terminalreporter.write_line(line)
