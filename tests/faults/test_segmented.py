"""Segmented downloads from a real server: exact bytes over 1-8 connections, fallbacks, stealing."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from ed_extractor.demo.mirror import nginx_path, start_mirror
from ed_extractor.hashing import PartSink
from ed_extractor.http import make_client
from ed_extractor.services.file_transfer.base import DownloadRequest, SilentProgress
from ed_extractor.services.file_transfer.part_file import PartFile
from ed_extractor.services.file_transfer.range_engine import RangeDownload
from ed_extractor.services.file_transfer.resume import ResumePoint
from ed_extractor.services.file_transfer.transfer import ranged_download
from tests.faults.conftest import (
    assert_stored,
    cli,
    environment,
    explain,
    gzip_dump,
    payload,
    record_of,
    sha256,
)
from tests.faults.server import OK, Exchange, FaultServer, Plan, Version, http_date

Start = Callable[..., FaultServer]

SIZE = 6 << 20
BODY = payload(SIZE, seed=21)
NAME = "galaxy.bin"
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def fetch(
    server: FaultServer, dest: Path, connections: str, *, name: str = NAME, native: str = "1"
) -> subprocess.CompletedProcess[str]:
    return cli(
        "fetch", server.url(name), "--dest", str(dest), "--json", "--connections", connections,
        env={"ED_EXTRACTOR_NATIVE": native},
    )  # fmt: skip


def segmented_line(result: subprocess.CompletedProcess[str]) -> dict[str, Any] | None:
    """The run's "segmented download done" log line, None without one."""
    lines = [json.loads(line) for line in result.stderr.splitlines() if "segmented" in line]
    assert len(lines) <= 1, result.stderr
    return lines[0] if lines else None


def connections_used(result: subprocess.CompletedProcess[str]) -> int:
    """How many connections the run's segmented download used (its log line), 1 without one."""
    line = segmented_line(result)
    return 1 if line is None else int(line["connections"])


def ranges_asked(server: FaultServer) -> list[tuple[int, int]]:
    """The (first, last) byte of every closed ranged body GET, in order of arrival."""
    asked = []
    for exchange in server.body_gets():
        match = _RANGE.match(exchange.range or "")
        if match:
            asked.append((int(match.group(1)), int(match.group(2))))
    return asked


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
@pytest.mark.parametrize("connections", [1, 4, 8])
def test_n_connections_store_exactly_the_servers_bytes(
    connections: int, native: str, fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY))
    result = fetch(server, dest, str(connections), native=native)
    assert_stored(result, dest, NAME, BODY, server)  # bytes and SHA-256 as hashlib has them
    gets = server.body_gets()
    assert len(gets) == connections, explain(result, server)
    if connections == 1:
        assert gets[0].range is None
        return
    asked = sorted(ranges_asked(server))
    assert asked[0][0] == 0
    assert asked[-1][1] == SIZE - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(asked)), asked
    assert all(g.status == 206 and g.if_range == '"v1"' for g in gets), explain(result, server)
    assert server.body_bytes() == SIZE  # every byte sent once


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
def test_a_gzip_dump_over_four_connections_is_checked_whole_in_file_order(
    native: str, fault_server: Start, dest: Path
) -> None:
    body, records = gzip_dump(60_000, seed=4)
    name = "galaxy.json.gz"
    server = fault_server(Version(body, content_type="application/gzip"))
    result = fetch(server, dest, "4", name=name, native=native)
    assert_stored(result, dest, name, body, server)
    assert len(server.body_gets()) == 4, explain(result, server)
    record = record_of(dest, name)
    assert record is not None
    assert record.records == records


def test_a_corrupt_gzip_over_four_connections_fails_and_keeps_nothing(
    fault_server: Start, dest: Path
) -> None:
    body, _ = gzip_dump(60_000, seed=4)
    broken = body[: len(body) // 2] + bytes(64) + body[len(body) // 2 + 64 :]
    name = "galaxy.json.gz"
    server = fault_server(Version(broken, content_type="application/gzip"))
    result = fetch(server, dest, "4", name=name)
    assert result.returncode == 1, explain(result, server)
    assert not (dest / name).exists()
    assert not (dest / f"{name}.part").exists()
    assert record_of(dest, name) is None


def test_a_server_that_ignores_range_is_fetched_over_one_connection_from_scratch(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), lambda n, exchange: Plan(ignore_range=True))
    result = fetch(server, dest, "4")
    assert_stored(result, dest, NAME, BODY, server)
    last = server.body_gets()[-1]
    assert last.range is None, explain(result, server)
    assert last.status == 200


def test_a_content_range_that_does_not_fit_falls_back_to_one_connection(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(
        Version(BODY), lambda n, exchange: Plan(range_shift=100) if exchange.range else OK
    )
    result = fetch(server, dest, "4")
    assert_stored(result, dest, NAME, BODY, server)
    assert server.body_gets()[-1].range is None, explain(result, server)


def test_a_file_changed_mid_download_fails_if_range_and_is_fetched_clean(
    fault_server: Start, dest: Path
) -> None:
    new = Version(payload(SIZE, seed=22), etag='"v2"', last_modified=http_date(1_700_086_400))
    server = fault_server(Version(BODY))

    def plans(n: int, exchange: Exchange) -> Plan:
        if n == 1:  # replaced on the server after the first range went out
            server.set_version(new)
        return OK

    server.plans = plans
    result = fetch(server, dest, "4")
    assert_stored(result, dest, NAME, new.body, server)
    statuses = [(e.if_range, e.status) for e in server.body_gets()]
    assert ('"v1"', 200) in statuses, explain(result, server)  # If-Range said: not that file
    record = record_of(dest, NAME)
    assert record is not None
    assert record.etag == '"v2"'


def test_a_connection_that_finishes_takes_over_half_of_a_slow_range(
    fault_server: Start, dest: Path
) -> None:
    size = 32 << 20
    half = size // 2
    body = payload(size, seed=23)

    def plans(n: int, exchange: Exchange) -> Plan:
        if exchange.range_start == 0:  # the first range trickles
            return Plan(throttle=(64 * 1024, 0.05))
        return OK

    server = fault_server(Version(body), plans)
    result = fetch(server, dest, "2")
    assert_stored(result, dest, NAME, body, server)
    asked = ranges_asked(server)
    assert sorted(asked[:2]) == [(0, half - 1), (half, size - 1)], explain(result, server)
    stolen = [first for first, _ in asked[2:] if 0 < first < half]
    assert stolen, f"no range was split: {asked}\n{explain(result, server)}"
    assert server.body_bytes() < size + (1 << 20)  # the split range was not fetched twice


@pytest.fixture(scope="module")
def nginx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nginx-root")
    (root / NAME).write_bytes(BODY)
    return root


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
@pytest.mark.parametrize("connections", [1, 4, 8])
def test_n_connections_from_nginx_store_exactly_its_bytes(
    connections: int, native: str, nginx_root: Path, dest: Path
) -> None:
    if nginx_path() is None:
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it as root)")
    with start_mirror(nginx_root, prefer="nginx") as mirror:
        result = cli(
            "fetch", f"{mirror.base_url}/{NAME}", "--dest", str(dest), "--json",
            "--connections", str(connections), env={"ED_EXTRACTOR_NATIVE": native},
        )  # fmt: skip
    assert_stored(result, dest, NAME, BODY)
    assert connections_used(result) == connections


def test_the_connections_variable_is_used_when_the_option_is_absent(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY))
    result = cli(
        "fetch", server.url(NAME), "--dest", str(dest), "--json",
        env={"ED_EXTRACTOR_CONNECTIONS": "3"},
    )  # fmt: skip
    assert_stored(result, dest, NAME, BODY, server)
    assert connections_used(result) == 3


@pytest.mark.parametrize(
    ("validators", "ramps"),
    [(Version(b""), True), (Version(b"", etag=None, last_modified=None), False)],
    ids=["strong-etag", "no-validator"],
)
def test_auto_splits_a_large_file_only_when_a_validator_makes_ranges_safe(
    validators: Version, ramps: bool, fault_server: Start, dest: Path
) -> None:
    body = payload(64 << 20, seed=24)
    server = fault_server(dataclasses.replace(validators, body=body))
    result = fetch(server, dest, "auto")
    assert_stored(result, dest, NAME, body, server)
    line = segmented_line(result)
    if not ramps:
        assert line is None, result.stderr
        assert [g.range for g in server.body_gets()] == [None], explain(result, server)
        return
    assert line is not None, result.stderr
    assert line["ramp"], line  # why the ramp stopped where it did
    assert 1 <= line["connections"] <= line["connections_peak"] <= 8, line
    assert all(g.status == 206 for g in server.body_gets()), explain(result, server)


def test_a_range_cut_mid_way_is_continued_by_the_retry_where_its_bytes_stopped(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [OK, Plan(cut_after=256 * 1024)])
    result = fetch(server, dest, "4")
    assert_stored(result, dest, NAME, BODY, server)
    cut = server.body_gets()[1]
    match = _RANGE.match(cut.range or "")
    assert match is not None, explain(result, server)
    resumed_at = int(match.group(1)) + 256 * 1024
    later = [first for first, _ in ranges_asked(server)[4:]]
    assert resumed_at in later, explain(result, server)  # not from the range's start again
    assert server.body_bytes() <= SIZE + 4 * (1 << 20), explain(result, server)


def test_a_kept_segmented_part_of_a_file_since_replaced_is_fetched_clean(
    fault_server: Start, dest: Path
) -> None:
    new = Version(payload(SIZE, seed=25), etag='"v2"', last_modified=http_date(1_700_086_400))
    server = fault_server(Version(BODY), [OK, Plan(cut_after=256 * 1024)])
    args = ("fetch", server.url(NAME), "--dest", str(dest), "--json", "--connections", "4")
    failed = cli(*args, env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "1"})
    assert failed.returncode == 1, explain(failed, server)
    sidecar = json.loads((dest / f"{NAME}.part.resume").read_text())
    assert sidecar["segments"], sidecar  # kept as a segmented part (finished ranges may merge)
    assert sum(done - first for first, done, _ in sidecar["segments"]) < SIZE, sidecar
    server.set_version(new)
    mark = len(server.seen())
    result = cli(*args)
    assert_stored(result, dest, NAME, new.body, server)
    assert all(e.if_range != '"v1"' for e in server.body_gets(mark)), explain(result, server)


def test_explicit_ranges_are_taken_whole_through_the_given_opener(
    fault_server: Start, tmp_path: Path
) -> None:
    server = fault_server(Version(BODY))
    url, half = server.url(NAME), SIZE // 2
    opened: list[tuple[int, int]] = []
    request = DownloadRequest(
        name=NAME, url=url, final_path=tmp_path / NAME, expected_length=SIZE,
        expected_etag='"v1"', ranges_supported=True, connections=2,
    )  # fmt: skip
    with make_client() as client:

        def opener(first: int, end: int | None) -> AbstractContextManager[httpx.Response]:
            assert end is not None
            opened.append((first, end))
            headers = {"Range": f"bytes={first}-{end - 1}", "If-Match": '"v1"'}
            return client.stream("GET", url, headers=headers)

        result = RangeDownload(
            request, PartFile(request.final_path, url), opener, SIZE, validator='"v1"',
            connections=2, ranges=((0, 0, half), (half, half, SIZE)),
        ).run(None, SilentProgress())  # fmt: skip
    assert sorted(opened) == [(0, half), (half, SIZE)]
    assert result.sha256 == sha256(BODY)
    assert (tmp_path / NAME).read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


class SyncLedger:
    """A real PartSink whose writes are noted, and which of them each fdatasync covered."""

    def __init__(self, writer: PartSink) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self._since_sync: list[tuple[int, int]] = []
        self.synced: list[tuple[int, int]] = []

    def write(self, offset: int, data: bytes | memoryview) -> int:
        count = self._writer.write(offset, data)
        with self._lock:
            self._since_sync.append((offset, offset + count))
        return count

    def sync_data(self) -> None:
        with self._lock:  # only writes done before the sync starts are surely covered by it
            covered, self._since_sync = self._since_sync, []
        self._writer.sync_data()
        with self._lock:
            self.synced.extend(covered)

    def covers(self, start: int, end: int) -> bool:
        with self._lock:
            spans = sorted(self.synced)
        reached = start
        for first, last in spans:
            if first > reached:
                break
            reached = max(reached, last)
        return reached >= end

    def __getattr__(self, name: str) -> object:
        return getattr(self._writer, name)


class LedgeredPartFile(PartFile):
    """A PartFile that checks every sidecar it writes against what was synced before it."""

    ledger: SyncLedger
    claims: list[ResumePoint]
    unsynced: list[tuple[int, int, int]]

    def open_sink(self, size: int | None, **options: Any) -> PartSink:
        self.ledger = SyncLedger(super().open_sink(size, **options))
        self.claims, self.unsynced = [], []
        return cast(PartSink, self.ledger)

    def allow_resume(self, point: ResumePoint) -> None:
        self.claims.append(point)
        self.unsynced += [s for s in point.segments if not self.ledger.covers(s[0], s[1])]
        super().allow_resume(point)


def test_the_sidecar_never_claims_bytes_that_no_fdatasync_covered(
    fault_server: Start, tmp_path: Path
) -> None:
    server = fault_server(Version(BODY), lambda n, exchange: Plan(throttle=(32 * 1024, 0.02)))
    url = server.url(NAME)
    request = DownloadRequest(
        name=NAME, url=url, final_path=tmp_path / NAME, expected_length=SIZE,
        expected_etag='"v1"', ranges_supported=True, connections=4,
    )  # fmt: skip
    part = LedgeredPartFile(request.final_path, url)
    with make_client() as client:
        result = ranged_download(client, request, part, 4).run(None, SilentProgress())
    assert result.sha256 == sha256(BODY)
    progressed = [p for p in part.claims if any(w > s for s, w, _ in p.segments)]
    assert len(progressed) >= 3, f"too few saves to judge: {part.claims}"
    assert part.unsynced == [], f"ranges claimed before an fdatasync covered them: {part.unsynced}"


@pytest.fixture
def large_files(tmp_path: Path) -> Iterator[Path]:
    """A folder for a test's large files (256-512 MiB), removed when the test ends."""
    folder = tmp_path / "large"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("files", "options"),
    [(1, ("--connections", "16")), (4, ("--parallel", "4"))],
    ids=["16-connections", "parallel-4"],
)
def test_peak_memory_stays_bounded(large_files: Path, files: int, options: tuple[str, ...]) -> None:
    root, dest = large_files / "root", large_files / "dest"
    root.mkdir()
    bodies = {
        f"galaxy-{n}.bin": payload(max(64 << 20, (128 << 20) // files), seed=26 + n)
        for n in range(files)
    }
    for name, body in bodies.items():
        (root / name).write_bytes(body)
    with start_mirror(root) as mirror:  # nginx when installed
        urls = [f"{mirror.base_url}/{name}" for name in bodies]
        child = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS_CHILD, str(dest), *options, *urls],
            capture_output=True, text=True, timeout=300, env=environment(), check=False,
        )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    peak_mib = int(child.stdout.split()[-1]) / 1024
    for name, body in bodies.items():
        assert (dest / name).read_bytes() == body, name
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB"


_PEAK_RSS_CHILD = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-m", "ed_extractor", "fetch", "--dest", *sys.argv[1:]],
               check=True, capture_output=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
