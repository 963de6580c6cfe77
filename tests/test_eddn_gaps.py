"""EDDN coverage logs and `eddn gaps`: the interval rule on written logs, then recorders killed."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ed_extractor.commands.eddn_gaps import add_gaps_parser, run_gaps
from ed_extractor.errors import UsageError
from ed_extractor.pipeline.eddn_coverage import (
    HEARTBEAT_S,
    Coverage,
    CoverageLog,
    Gap,
    covered_intervals,
    covered_seconds,
    format_instant,
    gaps,
)
from tests.eddn_relay import Relay, sandbox_message
from tests.test_eddn import start_eddn, wait_until

T0 = datetime(2026, 12, 7, 4, 0, 0, tzinfo=UTC)
REPLICAS = Path("eddn/_replicas")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write_log(dest: Path, replica: str, events: list[tuple[float, str]], tail: str = "") -> Path:
    """A coverage log as a recorder writes it: one line per (seconds after T0, event)."""
    path = dest / REPLICAS / replica / "coverage.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"at": format_instant(at(s)), "event": e}) + "\n" for s, e in events]
    path.write_text("".join(lines) + tail)
    return path


def beats(first: float, last: float, event: str = "beat") -> list[tuple[float, str]]:
    """A beat every HEARTBEAT_S from ``first`` to ``last`` (the first one named ``event``)."""
    count = int((last - first) / HEARTBEAT_S) + 1
    return [(first + i * HEARTBEAT_S, event if i == 0 else "beat") for i in range(count)]


def gap(start: float, end: float) -> Gap:
    return Gap(at(start), at(end), end - start)


# --- the interval rule ----------------------------------------------------------------------------


def test_a_clean_run_covers_from_start_to_stop(tmp_path: Path) -> None:
    write_log(tmp_path, "a", [*beats(0, 60, "start"), (62.5, "stop")])
    assert covered_intervals(tmp_path, "a", until=at(3600)) == [(at(0), at(62.5))]
    assert gaps(tmp_path, until=at(100)) == [gap(62.5, 100)]  # nobody receives after the stop


def test_a_kill_9_leaves_two_heartbeats_of_coverage_after_the_last_beat(tmp_path: Path) -> None:
    write_log(tmp_path, "a", beats(0, 60, "start"))  # killed between 60 and 65
    assert covered_intervals(tmp_path, "a", until=at(3600)) == [(at(0), at(70))]
    assert gaps(tmp_path, until=at(3600)) == [gap(70, 3600)]


def test_a_replica_running_now_covers_up_to_now(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    path = tmp_path / REPLICAS / "a" / "coverage.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(
        json.dumps({"at": format_instant(now - timedelta(seconds=s)), "event": "beat"}) + "\n"
        for s in (20, 15, 10, 5, 1)
    ))  # fmt: skip
    assert gaps(tmp_path) == []
    [(start, end)] = covered_intervals(tmp_path)
    assert start == now - timedelta(seconds=20)
    assert datetime.now(UTC) - end < timedelta(seconds=1)


def test_overlapping_replicas_leave_no_gap_where_one_of_them_receives(tmp_path: Path) -> None:
    write_log(tmp_path, "a", [*beats(0, 100, "start"), (102, "stop"), *beats(300, 400, "start")])
    write_log(tmp_path, "b", beats(90, 310, "start"))  # killed after its beat at 310
    assert covered_intervals(tmp_path, "a", until=at(410)) == [(at(0), at(102)), (at(300), at(410))]
    assert covered_intervals(tmp_path, "b", until=at(410)) == [(at(90), at(320))]
    assert covered_intervals(tmp_path, until=at(410)) == [(at(0), at(410))]
    assert gaps(tmp_path, until=at(410)) == []
    assert covered_seconds(tmp_path, at(0), at(410)) == 410.0


def test_both_replicas_down_is_one_gap_between_their_coverages(tmp_path: Path) -> None:
    write_log(tmp_path, "a", beats(0, 100, "start"))  # kill -9: covered until 110
    write_log(tmp_path, "b", [*beats(3, 98, "start"), *beats(140, 200, "start")])  # until 108
    assert gaps(tmp_path, until=at(205)) == [gap(110, 140)]
    assert covered_seconds(tmp_path, at(0), at(200)) == 170.0


def test_a_silent_period_is_not_covered_until_the_next_beat(tmp_path: Path) -> None:
    events = [*beats(0, 10, "start"), (12, "silent"), *beats(17, 30), (33, "silent"),
              *beats(60, 70), (72, "stop")]  # fmt: skip
    write_log(tmp_path, "a", events)
    assert covered_intervals(tmp_path, "a", until=at(100)) == [
        (at(0), at(12)), (at(17), at(33)), (at(60), at(72)),
    ]  # fmt: skip
    # 12..17 is shorter than GAP_MIN_S (two heartbeats): not a gap, though not covered either
    assert gaps(tmp_path, until=at(72)) == [gap(33, 60)]
    assert covered_seconds(tmp_path, at(0), at(72)) == 12 + 16 + 12


def test_an_uncovered_interval_shorter_than_two_heartbeats_is_not_a_gap(tmp_path: Path) -> None:
    write_log(tmp_path, "a", [*beats(0, 20, "start"), (21, "stop"), *beats(30.999, 40, "start"),
                              (41, "stop"), *beats(51, 60, "start"), (61, "stop")])  # fmt: skip
    assert gaps(tmp_path, until=at(61)) == [gap(41, 51)]  # 21..30.999 is 9.999 s: not a gap


def test_since_and_the_default_since(tmp_path: Path) -> None:
    write_log(tmp_path, "a", [*beats(100, 200, "start"), (201, "stop")])
    assert gaps(tmp_path, until=at(201)) == []  # from the earliest event on record
    assert gaps(tmp_path, since=at(0), until=at(201)) == [gap(0, 100)]
    assert gaps(tmp_path, since=at(150), until=at(300)) == [gap(201, 300)]


def test_a_partial_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    write_log(tmp_path, "a", beats(0, 50, "start"), tail='{"at": "2026-12-07T04:00:5')
    write_log(tmp_path, "b", [*beats(0, 10, "start"), (11, "stop")], tail="\x00\x00garbage\n")
    coverage = Coverage.read(tmp_path)
    assert coverage.damaged == {"a": 1, "b": 1}
    assert [len(events) for events in coverage.replicas.values()] == [11, 4]
    assert coverage.gaps(until=at(100)) == [gap(60, 100)]


def test_no_log_no_gap_unless_a_since_is_given(tmp_path: Path) -> None:
    assert gaps(tmp_path) == []
    assert gaps(tmp_path, since=at(0), until=at(30)) == [gap(0, 30)]


def test_the_log_writes_the_specs_lines_and_appends_across_runs(tmp_path: Path) -> None:
    times = iter([at(0), at(5), at(7.25), at(9), at(100), at(101), at(102)])
    folder = tmp_path / REPLICAS / "pod-0"
    log = CoverageLog(folder, heartbeat_s=3600, clock=lambda: next(times))
    log.start()
    log.beat()
    log.beat_if_due()  # not due for an hour: nothing written
    log.silent()
    log.connected()
    log.stop()
    again = CoverageLog(folder, heartbeat_s=3600, clock=lambda: next(times))
    again.start()
    again.stop()
    assert (folder / "coverage.jsonl").read_text().splitlines() == [
        '{"at": "2026-12-07T04:00:00.000Z", "event": "start"}',
        '{"at": "2026-12-07T04:00:05.000Z", "event": "beat"}',
        '{"at": "2026-12-07T04:00:07.250Z", "event": "silent"}',
        '{"at": "2026-12-07T04:00:09.000Z", "event": "connected"}',
        '{"at": "2026-12-07T04:01:40.000Z", "event": "stop"}',
        '{"at": "2026-12-07T04:01:41.000Z", "event": "start"}',
        '{"at": "2026-12-07T04:01:42.000Z", "event": "stop"}',
    ]


def test_a_beat_is_due_once_a_heartbeat_has_passed(tmp_path: Path) -> None:
    log = CoverageLog(tmp_path, heartbeat_s=0.2)
    log.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        log.beat_if_due()
        time.sleep(0.01)
    log.stop()
    events = [json.loads(line)["event"] for line in log.path.read_text().splitlines()]
    assert (events[0], events[-1]) == ("start", "stop")
    assert events.count("beat") in (4, 5)  # 1.0 s / 0.2 s, give or take the last turn


# --- the command ----------------------------------------------------------------------------------


def gaps_command(*argv: str) -> argparse.Namespace:
    """``eddn gaps`` parsed by a parser of its own (the ``eddn`` command wires it at merge)."""
    parser = argparse.ArgumentParser(prog="eddn")
    add_gaps_parser(parser.add_subparsers(dest="eddn_command", required=True))
    return parser.parse_args(["gaps", *argv])


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = run_gaps(gaps_command(*argv))
    return code, capsys.readouterr().out.splitlines()


def test_gaps_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path, "a", [*beats(0, 20, "start"), (21, "stop"), *beats(60, 80, "start")])
    since = format_instant(at(-30))
    code, lines = run_command(capsys, "--dest", str(tmp_path), "--since", since, "--json")
    assert code == 0  # gaps are data, not a failure
    found = [json.loads(line) for line in lines]
    assert found[:2] == [
        {"start": "2026-12-07T03:59:30.000Z", "end": "2026-12-07T04:00:00.000Z", "seconds": 30.0},
        {"start": "2026-12-07T04:00:21.000Z", "end": "2026-12-07T04:01:00.000Z", "seconds": 39.0},
    ]
    assert found[2]["start"] == "2026-12-07T04:01:30.000Z"  # a kill -9 at 80: until now
    assert len(found) == 3
    code, lines = run_command(capsys, "--dest", str(tmp_path), "--since", "2026-12-07T04:00:00")
    assert code == 0
    assert lines[0] == "gap 2026-12-07T04:00:21.000Z .. 2026-12-07T04:01:00.000Z  39.0 s"
    assert len(lines) == 2


def test_gaps_without_any_gap_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(capsys, "--dest", str(tmp_path), "--json") == (0, [])
    assert run_command(capsys, "--dest", str(tmp_path)) == (
        0, [f"no coverage log in {tmp_path / REPLICAS}"],
    )  # fmt: skip


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-12-07T25:00"])
def test_a_bad_since_is_a_usage_error(since: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        gaps_command("--since", since)
    assert exit_.value.code == 2
    assert "expected an ISO 8601 time" in capsys.readouterr().err


def test_an_object_store_destination_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="reads a local folder"):
        run_gaps(gaps_command("--dest", "s3://bucket/prefix"))


# --- real recorders, killed -----------------------------------------------------------------------

HEARTBEAT = 1.0  # ED_EXTRACTOR_EDDN_HEARTBEAT_S of the recorders below and of `eddn gaps`
HEARTBEAT_SETTING = "ED_EXTRACTOR_EDDN_HEARTBEAT_S"
POLL_SLACK_S = 0.5  # a beat comes at the first loop turn after it is due (the poll waits <= 0.2 s)


@pytest.fixture
def relay() -> Iterator[Relay]:
    publisher = Relay()
    yield publisher
    publisher.close()


@pytest.fixture
def heartbeat(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv(HEARTBEAT_SETTING, str(HEARTBEAT))
    return HEARTBEAT


class Recorders:
    """``eddn`` processes, one per replica name, on one destination and one relay."""

    def __init__(self, relay: Relay, dest: Path) -> None:
        self.relay, self.dest = relay, dest
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, *names: str) -> datetime:
        """Start them; return when the first one subscribed (it is receiving from then on)."""
        for name in names:
            env = {"ED_EXTRACTOR_EDDN_REPLICA": name, HEARTBEAT_SETTING: str(HEARTBEAT)}
            self.processes[name] = start_eddn("--endpoint", self.relay.endpoint,
                                              "--dest", str(self.dest), env=env)  # fmt: skip
        self.relay.wait_for_subscriber(timeout_s=30)
        subscribed = datetime.now(UTC)
        for _ in names[1:]:
            self.relay.wait_for_subscriber(timeout_s=30)
        for name in names:
            self.wait_for_beats(name, 2)
        return subscribed

    def kill(self, *names: str) -> datetime:
        """SIGKILL them; return the time they were gone."""
        for name in names:
            self.processes[name].send_signal(signal.SIGKILL)
        killed = datetime.now(UTC)
        for name in names:
            self.processes.pop(name).wait(timeout=30)
        return killed

    def terminate(self) -> None:
        for name, process in self.processes.items():
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 0, (name, stderr)
        self.processes.clear()

    def wait_for_beats(self, name: str, count: int) -> None:
        wait_until(lambda: self.events(name).count("beat") >= count, timeout_s=30)

    def events(self, name: str) -> list[str]:
        path = self.dest / REPLICAS / name / "coverage.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line)["event"] for line in lines if line.endswith("}")]


@pytest.fixture
def recorders(relay: Relay, tmp_path: Path) -> Iterator[Recorders]:
    running = Recorders(relay, tmp_path)
    yield running
    for process in running.processes.values():
        process.kill()
        process.wait(timeout=30)


def gaps_now(dest: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    code, lines = run_command(capsys, "--dest", str(dest), "--json")
    assert code == 0
    return [json.loads(line) for line in lines]


def test_both_recorders_killed_is_one_gap_within_the_heartbeat_bounds(
    recorders: Recorders, heartbeat: float, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    recorders.start("pod-a", "pod-b")
    for n in range(3):  # traffic flows (test-schema messages are received, never written)
        recorders.relay.send(sandbox_message(n))
    time.sleep(heartbeat / 2)  # between two beats, not right after one
    killed = recorders.kill("pod-a", "pod-b")
    time.sleep(5.0)
    restarted = datetime.now(UTC)
    receiving_again = recorders.start("pod-a", "pod-b")
    [found] = gaps_now(tmp_path, capsys)
    start, end = datetime.fromisoformat(found["start"]), datetime.fromisoformat(found["end"])
    # The last beat before the kill was at most one heartbeat (+ a loop turn) before it, and its
    # coverage lasts two heartbeats: the gap starts between (H - slack) and 2H after the kill.
    assert killed + timedelta(seconds=heartbeat - POLL_SLACK_S) <= start
    assert start <= killed + timedelta(seconds=2 * heartbeat)
    # The restarted recorder writes "start" before it subscribes: the gap ends between the
    # restart and the first subscription the relay sees.
    assert restarted <= end <= receiving_again
    assert found["seconds"] == pytest.approx((end - start).total_seconds(), abs=0.002)
    print(f"\ngap bounds: start - kill = {(start - killed).total_seconds():.3f} s, "
          f"end - restart = {(end - restarted).total_seconds():.3f} s, "
          f"first subscription - end = {(receiving_again - end).total_seconds():.3f} s "
          f"(heartbeat {heartbeat} s)")  # fmt: skip
    recorders.terminate()
    assert recorders.events("pod-a")[-1] == recorders.events("pod-b")[-1] == "stop"


def test_one_recorder_killed_while_the_other_runs_is_no_gap(
    recorders: Recorders, heartbeat: float, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    recorders.start("pod-a", "pod-b")
    killed = recorders.kill("pod-a")
    time.sleep(4 * heartbeat)
    assert gaps_now(tmp_path, capsys) == []
    [(_, a_end), *later] = covered_intervals(tmp_path, "pod-a", heartbeat_s=heartbeat)
    assert later == []  # pod-a's own hole, which pod-b covers
    assert a_end <= killed + timedelta(seconds=2 * heartbeat)
    recorders.start("pod-a")
    recorders.terminate()  # both stop cleanly: from the later "stop" on, nobody receives
    stopped = datetime.now(UTC)
    time.sleep(2 * heartbeat + 0.5)
    [found] = gaps_now(tmp_path, capsys)
    assert datetime.fromisoformat(found["start"]) <= stopped
    assert recorders.events("pod-a")[-1] == recorders.events("pod-b")[-1] == "stop"


@pytest.mark.parametrize("name", ["../x", "a/b", "a.b", ".."])
def test_a_replica_name_that_could_leave_the_destination_is_refused(
    name: str, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    process = start_eddn("--endpoint", "tcp://127.0.0.1:9", "--dest", str(dest), "--duration", "1",
                         env={"ED_EXTRACTOR_EDDN_REPLICA": name})  # fmt: skip
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert stderr.splitlines() == [
        f"ed-extractor: error: invalid replica name {name!r}: use 1-63 letters, digits, "
        "'-' or '_', starting with a letter or digit"
    ]
    assert sorted(tmp_path.rglob("*")) == []
