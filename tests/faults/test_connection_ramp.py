"""`--connections auto`: the ramp adds connections while they pay, against real throttled servers.

The servers limit each connection by sleeping between chunks, so what a test asserts depends on
the thresholds it sets far from the served rate, not on the speed of the machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from ed_extractor.http import make_client
from ed_extractor.services.file_transfer.base import DownloadRequest, SilentProgress
from ed_extractor.services.file_transfer.part_file import PartFile
from ed_extractor.services.file_transfer.ramp import MB, ConnectionRamp, RampPolicy
from ed_extractor.services.file_transfer.transfer import ranged_download
from tests.faults.conftest import assert_stored, cli, explain, payload, sha256
from tests.faults.server import OK, Exchange, FaultServer, Plan, Version

Start = Callable[..., FaultServer]

NAME = "galaxy.bin"
PER_CONNECTION = Plan(throttle=(64 * 1024, 0.01))  # at most 6.5 MB/s per connection
#: Thresholds far from the served rate: a per-connection share never counts as fast, and a step
#: is kept only when it brings a fifth more (doubling a per-connection limit brings about 2x).
PATIENT = RampPolicy(fast_connection=1000 * MB, min_gain=1.2, warmup_s=0.1, measure_s=0.5)


def throttled(n: int, exchange: Exchange) -> Plan:
    return PER_CONNECTION


def ramped(
    server: FaultServer, tmp_path: Path, body: bytes, policy: RampPolicy, most: int
) -> ConnectionRamp:
    """Fetch the server's file with a ramp of ``policy`` up to ``most``; check it; the ramp."""
    url = server.url(NAME)
    request = DownloadRequest(
        name=NAME, url=url, final_path=tmp_path / NAME, expected_length=len(body),
        expected_etag='"v1"', ranges_supported=True, connections="auto",
    )  # fmt: skip
    with make_client(connections_per_file=most) as client:
        engine = ranged_download(
            client, request, PartFile(request.final_path, url), most, ramp=policy
        )
        result = engine.run(None, SilentProgress())
    assert result.sha256 == sha256(body)
    assert (tmp_path / NAME).read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]
    ramp = engine.ramp
    assert ramp is not None
    return ramp


def test_against_a_per_connection_limit_the_ramp_adds_connections(
    fault_server: Start, tmp_path: Path
) -> None:
    body = payload(32 << 20, seed=41)
    server = fault_server(Version(body), throttled)
    ramp = ramped(server, tmp_path, body, PATIENT, most=4)
    assert ramp.peak > 1, (ramp.reason, ramp.history())
    assert ramp.connections > 1, (ramp.reason, ramp.history())
    assert server.most_at_once() > 1, server.seen()
    assert [s.connections for s in ramp.steps][:2] == [1, 2], ramp.history()
    assert all(e.status == 206 for e in server.body_gets()), server.seen()


def test_a_connection_faster_than_the_bound_keeps_the_ramp_at_one(
    fault_server: Start, tmp_path: Path
) -> None:
    body = payload(8 << 20, seed=42)
    server = fault_server(Version(body), throttled)
    fast = RampPolicy(fast_connection=0.2 * MB, warmup_s=0.1, measure_s=0.4)  # far below 6.5
    ramp = ramped(server, tmp_path, body, fast, most=8)
    assert (ramp.connections, ramp.peak) == (1, 1), (ramp.reason, ramp.history())
    assert ramp.reason is not None
    assert "fast" in ramp.reason
    assert server.most_at_once() == 1, server.seen()


def test_a_step_that_brings_nothing_is_taken_back(fault_server: Start, tmp_path: Path) -> None:
    body = payload(24 << 20, seed=43)
    turns = threading.Lock()  # the server's whole output is one connection's worth
    shared = Plan(throttle=(64 * 1024, 0.01), turns=turns)
    server = fault_server(Version(body), lambda n, exchange: shared)
    ramp = ramped(server, tmp_path, body, PATIENT, most=8)
    assert ramp.peak == 2, (ramp.reason, ramp.history())
    assert ramp.connections == 1, (ramp.reason, ramp.history())
    assert ramp.reason is not None
    assert "back to 1" in ramp.reason


def test_auto_from_the_command_line_ramps_against_a_per_connection_limit(
    fault_server: Start, dest: Path
) -> None:
    body = payload(64 << 20, seed=44)  # the size from which auto splits
    server = fault_server(Version(body), throttled)
    result = cli("fetch", server.url(NAME), "--dest", str(dest), "--json", timeout=120)
    assert_stored(result, dest, NAME, body, server)  # bytes, SHA-256, BLAKE3, manifest
    lines = [json.loads(line) for line in result.stderr.splitlines() if "segmented" in line]
    assert len(lines) == 1, explain(result)
    assert lines[0]["connections_peak"] > 1, lines[0]
    assert lines[0]["ramp"], lines[0]
    assert server.most_at_once() > 1, explain(result, server)


def test_auto_continues_a_part_file_written_by_four_connections(
    fault_server: Start, dest: Path
) -> None:
    size = 8 << 20
    body = payload(size, seed=45)
    cut = Plan(cut_after=256 * 1024)
    server = fault_server(Version(body), [OK, cut, OK, cut])  # two of the four ranges stop early
    url = server.url(NAME)
    failed = cli(
        "fetch", url, "--dest", str(dest), "--json", "--connections", "4",
        env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "1"},
    )  # fmt: skip
    assert failed.returncode == 1, explain(failed, server)
    sidecar = json.loads((dest / f"{NAME}.part.resume").read_text())
    assert len(sidecar["segments"]) > 1, sidecar
    mark = len(server.seen())
    result = cli("fetch", url, "--dest", str(dest), "--json", "--connections", "auto")
    assert_stored(result, dest, NAME, body, server)
    assert server.body_bytes(mark) < size, explain(result, server)  # only what was missing
    assert all(e.status == 206 for e in server.body_gets(mark)), explain(result, server)
    lines = [json.loads(line) for line in result.stderr.splitlines() if "segmented" in line]
    assert len(lines) == 1, explain(result)
    assert lines[0]["ramp"], lines[0]


# --- the decisions, fed measured byte counts directly -------------------------------------------

STEADY = RampPolicy(fast_connection=100 * MB, min_gain=1.25, warmup_s=1.0, measure_s=1.0)


def feed(ramp: ConnectionRamp, rate_per_connection: Callable[[int], float], seconds: int) -> None:
    """Run the ramp for ``seconds`` at one tick a second, ``rate(connections)`` MB/s in all."""
    received = 0.0
    for second in range(1, seconds + 1):
        received += rate_per_connection(ramp.connections) * MB
        ramp.observe(float(second), int(received))


def test_the_ramp_doubles_while_each_step_pays_and_stops_at_the_most() -> None:
    ramp = ConnectionRamp(STEADY, most=8, now=0.0)
    feed(ramp, lambda connections: 20.0 * connections, 20)
    assert [s.connections for s in ramp.steps] == [1, 2, 4, 8]
    assert (ramp.connections, ramp.peak) == (8, 8)
    assert ramp.reason == "reached the most connections (8)"


def test_the_ramp_stops_when_one_connection_is_fast() -> None:
    ramp = ConnectionRamp(STEADY, most=8, now=0.0)
    feed(ramp, lambda connections: 150.0, 20)
    assert (ramp.connections, ramp.peak) == (1, 1)
    assert ramp.reason == "150 MB/s per connection is fast (>= 100 MB/s)"


def test_the_ramp_takes_back_a_step_that_gained_too_little() -> None:
    ramp = ConnectionRamp(STEADY, most=8, now=0.0)
    feed(ramp, lambda connections: min(20.0 * connections, 90.0), 20)  # 80, then 90 of 160
    assert [s.connections for s in ramp.steps] == [1, 2, 4, 8, 8]  # 8 was looked at twice
    assert (ramp.connections, ramp.peak) == (4, 8)
    assert ramp.reason is not None
    assert ramp.reason.startswith("8 connections gained 1.12x over 4")


def test_one_bad_window_is_looked_at_again_before_the_ramp_stops() -> None:
    ramp = ConnectionRamp(STEADY, most=8, now=0.0)
    received = 0
    for second, megabytes in enumerate([20, 20, 40, 22, 40, 80, 80], start=1):
        received += megabytes * MB  # 22: a busy second while two connections are measured
        ramp.observe(float(second), received)
    assert [(s.connections, s.rate / MB) for s in ramp.steps] == [
        (1, 20),
        (2, 22),
        (2, 40),
        (4, 80),
    ]
    assert ramp.connections == 8
    assert ramp.reason is None


def test_the_warm_up_after_a_step_is_not_measured() -> None:
    ramp = ConnectionRamp(STEADY, most=2, now=0.0)
    ramp.observe(0.5, 5 * MB)  # a burst while connecting
    ramp.observe(1.0, 5 * MB)  # the warm-up ends: the measure starts here
    assert ramp.steps == []
    ramp.observe(2.0, 15 * MB)
    assert [(s.connections, s.rate) for s in ramp.steps] == [(1, 10 * MB)]
    assert ramp.connections == 2


def test_a_download_that_ends_while_measuring_says_so() -> None:
    ramp = ConnectionRamp(STEADY, most=8, now=0.0)
    ramp.observe(0.5, MB)
    ramp.finish()
    assert ramp.connections == 1
    assert ramp.reason == "the download ended while the ramp measured 1 connection(s)"
