"""EDDN replicas: several recorders on one destination, and ``eddn merge`` (real ZeroMQ)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.eddn_merge import RUN_BYTES, merge_hour
from ed_extractor.pipeline.gzip_lines import GzipLineFile, readable_lines
from ed_extractor.pipeline.lock import destination_lock
from tests.eddn_relay import Relay, commodity, journal
from tests.test_cli import json_lines
from tests.test_eddn import HOUR, Recording, lines_of, relay, start_eddn, wait_until

__all__ = ["relay"]  # the fixture, used by name

MERGE_KEYS = {"schema", "hour", "replicas", "messages", "duplicates", "truncated", "path", "status"}


def numbered(n: int) -> dict[str, Any]:
    """Message ``n``: commodity for odd n, journal for even n (its number is in uploaderID)."""
    return commodity(n) if n % 2 else journal(n)


def number_of(message: dict[str, Any]) -> int:
    return int(message["header"]["uploaderID"], 16)


def merge(dest: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "ed_extractor", "eddn", "merge", "--dest", str(dest), "--json",
         *extra],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ED_EXTRACTOR_LOG_FORMAT": "json"},
    )  # fmt: skip
    return done.returncode, json_lines(done.stdout), done.stderr


def canonical_files(dest: Path) -> list[Path]:
    return sorted(p for p in (dest / "eddn").glob("*/*.jsonl.gz") if p.parent.name != "_replicas")


def snapshot(dest: Path) -> tuple[dict[str, bytes], list[Any], int]:
    """The canonical files' bytes, the manifest's records and how many attempts it holds."""
    with ManifestStore(dest / "manifest.sqlite3") as store:
        records = [r.model_dump() for r in store.records()]
        attempts = len(store.history(limit=None))
    return {str(p): p.read_bytes() for p in canonical_files(dest)}, records, attempts


def write_replica_file(dest: Path, replica: str, name: str, messages: list[dict[str, Any]]) -> Path:
    """A closed replica hour file holding ``messages``, as a recorder writes them."""
    final = dest / "eddn" / "_replicas" / replica / name
    file = GzipLineFile(final)
    for message in messages:
        file.write_line(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())
    file.close()
    return final


def assert_each_message_once_in_gateway_order(path: Path) -> list[int]:
    messages = lines_of(path)
    numbers = [number_of(m) for m in messages]
    assert len(numbers) == len(set(numbers)), f"a message twice in {path}"
    stamps = [m["header"]["gatewayTimestamp"] for m in messages]
    assert stamps == sorted(stamps)
    return numbers


# --- two recorder processes, one killed -----------------------------------------------------------


def test_two_recorders_one_killed_and_restarted_merge_into_every_message_once(
    relay: Relay, tmp_path: Path
) -> None:
    def recorder(name: str) -> subprocess.Popen[str]:
        process = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path),
                             "--replica", name, "--json")  # fmt: skip
        relay.wait_for_subscriber(timeout_s=30)
        return process

    started = datetime.now(UTC)
    first, second = recorder("pod-a"), recorder("pod-b")
    published = list(range(600))
    for n in published:  # 100 messages a second for 6 s
        relay.send(numbered(n))
        if n == 200:  # after the recorder's first flush (every 5 s): it leaves a part file
            time.sleep(5.5)
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        if n == 400:
            first = recorder("pod-a")  # finishes the killed run's part file at start
        time.sleep(0.01)
    time.sleep(1.0)
    stopped = datetime.now(UTC)
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
    for process in (first, second):
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    # pod-b received all along: no gap while the recorders ran (only after both stopped)
    gaps = subprocess.run(
        [sys.executable, "-m", "ed_extractor", "eddn", "gaps", "--dest", str(tmp_path), "--json",
         "--since", started.isoformat()],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    starts = [datetime.fromisoformat(str(gap["start"])) for gap in json_lines(gaps.stdout)]
    assert all(start >= stopped for start in starts)

    code, lines, stderr = merge(tmp_path)
    assert code == 0, stderr
    assert {line["status"] for line in lines} <= {"merged", "unchanged"}
    assert all(set(line) == MERGE_KEYS for line in lines)
    files = canonical_files(tmp_path)
    assert {str(f) for f in files} == {line["path"] for line in lines}
    found = [n for f in files for n in assert_each_message_once_in_gateway_order(f)]
    if len({f.name for f in files}) == 1:  # (if the hour turned, a message may be in both hours)
        assert sorted(found) == published
    assert set(found) == set(published)
    replicas = sorted(p.name for p in (tmp_path / "eddn" / "_replicas").iterdir())
    assert replicas == ["pod-a", "pod-b"]
    assert not list(tmp_path.rglob("*.part"))
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        merged = [store.get(f"eddn/{f.parent.name}/{f.name}") for f in files]
    ran = (stopped - started).total_seconds()  # pod-b was receiving all along
    if len({f.name for f in files}) == 1:  # one hour: its coverage holds the whole run
        assert all(r is not None and (r.coverage_s or 0) >= ran - 3 for r in merged), merged

    before = snapshot(tmp_path)
    code, again, stderr = merge(tmp_path)
    assert code == 0, stderr
    assert [line["status"] for line in again] == ["unchanged"] * len(lines)
    assert snapshot(tmp_path) == before  # byte-identical files, the same records, no new attempt


def test_a_second_recorder_with_the_same_replica_name_is_refused(
    relay: Relay, tmp_path: Path
) -> None:
    running = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path), "--replica", "a")
    try:
        relay.wait_for_subscriber(timeout_s=30)
        second = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path),
                            "--replica", "a", "--duration", "5")  # fmt: skip
        _, stderr = second.communicate(timeout=30)
        assert second.returncode == 2
        [line] = stderr.strip().splitlines()
        assert "replica 'a' is already recording" in line
        other = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path),
                           "--replica", "b", "--duration", "1")  # fmt: skip
        _, stderr = other.communicate(timeout=30)
        assert other.returncode == 0, stderr  # another name shares the destination
    finally:
        running.send_signal(signal.SIGTERM)
        running.communicate(timeout=30)
    assert running.returncode == 0


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", "a.b", "-a", "", "x" * 64])
def test_bad_replica_names_are_refused_before_anything_is_written(
    name: str, tmp_path: Path
) -> None:
    for args, env in (([f"--replica={name}"], {}), ([], {"ED_EXTRACTOR_EDDN_REPLICA": name})):
        if env and not name:
            continue  # an empty variable is an unset one (the host name)
        process = start_eddn("--endpoint", "tcp://127.0.0.1:9", "--dest", str(tmp_path / "d"),
                             "--duration", "1", *args, env=env)  # fmt: skip
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 2
        [line] = stderr.strip().splitlines()
        assert "invalid replica name" in line
        assert not (tmp_path / "d").exists()


# --- the hour boundary, in process (a clock the test moves) ---------------------------------------


def test_recorders_merge_the_hours_they_close_and_the_canonical_file_is_the_union(
    relay: Relay, tmp_path: Path
) -> None:
    only_commodities = Recording(tmp_path, relay.endpoint, replica="a",
                                 schemas=frozenset({"commodity-3"}))  # fmt: skip
    relay.wait_for_subscriber()
    everything = Recording(tmp_path, relay.endpoint, replica="b")
    relay.wait_for_subscriber()
    for n in range(10):
        relay.send(numbered(n))
    only_commodities.received(10)
    everything.received(10)
    for recording in (only_commodities, everything):
        recording.now = HOUR + timedelta(seconds=5)  # 08:00:03: the 07 files close and merge
    wait_until(lambda: only_commodities.recorder.stats.files == 1)
    wait_until(lambda: everything.recorder.stats.files == 2)
    for n in range(10, 15):
        relay.send(numbered(n))
    everything.received(15)
    only_commodities.received(15)
    everything.finish()  # merges its 08 files while a's are still open
    for n in range(15, 20):
        relay.send(numbered(n))
    only_commodities.received(20)
    only_commodities.finish()

    eddn = tmp_path / "eddn"
    assert [number_of(m) for m in lines_of(eddn / "commodity-3/2026-12-03T07.jsonl.gz")] == [
        1, 3, 5, 7, 9]  # fmt: skip
    assert [number_of(m) for m in lines_of(eddn / "journal-1/2026-12-03T07.jsonl.gz")] == [
        0, 2, 4, 6, 8]  # fmt: skip
    # 08: b's journals (10-14) and every commodity, a's last ones received by a alone
    assert [number_of(m) for m in lines_of(eddn / "commodity-3/2026-12-03T08.jsonl.gz")] == [
        11, 13, 15, 17, 19]  # fmt: skip
    assert [number_of(m) for m in lines_of(eddn / "journal-1/2026-12-03T08.jsonl.gz")] == [
        10,
        12,
        14,
    ]


# --- eddn merge on crafted replica files ----------------------------------------------------------


def test_a_truncated_replica_file_is_merged_up_to_its_last_whole_line_and_reported(
    tmp_path: Path,
) -> None:
    write_replica_file(tmp_path, "a", "journal-1/2026-12-03T07.jsonl.gz",
                       [journal(n) for n in range(100)])  # fmt: skip
    cut = write_replica_file(tmp_path, "b", "journal-1/2026-12-03T07.jsonl.gz",
                             [journal(n) for n in range(50, 400)])  # fmt: skip
    with cut.open("r+b") as file:
        file.truncate(cut.stat().st_size * 2 // 3)  # a closed file whose gzip ends early
    with cut.open("rb") as file:
        readable = [json.loads(line) for line in readable_lines(file)]
    assert 50 < len(readable) < 350

    code, [line], stderr = merge(tmp_path)
    assert code == 0, stderr
    expected = sorted(range(50 + len(readable)), key=lambda n: (n % 60, n))
    merged = lines_of(tmp_path / "eddn/journal-1/2026-12-03T07.jsonl.gz")
    assert sorted(number_of(m) for m in merged) == list(range(50 + len(readable)))
    assert [m["header"]["gatewayTimestamp"] for m in merged] == [
        journal(n)["header"]["gatewayTimestamp"] for n in expected
    ]
    assert line == {"schema": "journal-1", "hour": "2026-12-03T07", "replicas": 2,
                    "messages": 50 + len(readable), "duplicates": 50, "truncated": 1,
                    "path": str(tmp_path / "eddn/journal-1/2026-12-03T07.jsonl.gz"),
                    "status": "merged"}  # fmt: skip
    assert "cut short" in stderr
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        record = store.get("eddn/journal-1/2026-12-03T07.jsonl.gz")
    assert record is not None
    assert record.records == 50 + len(readable)
    assert record.coverage_s == 0.0  # no replica logged any coverage: the files were made here


def test_a_late_replica_file_merges_the_hour_again_and_equal_content_is_left_alone(
    tmp_path: Path,
) -> None:
    name = "commodity-3/2026-12-03T07.jsonl.gz"
    write_replica_file(tmp_path, "a", name, [commodity(n) for n in range(1, 20, 2)])
    assert [line["status"] for line in merge(tmp_path)[1]] == ["merged"]
    before = snapshot(tmp_path)

    write_replica_file(tmp_path, "b", name, [commodity(n) for n in range(1, 20, 4)])
    code, [line], _ = merge(tmp_path)  # read again (a new file), same content: nothing changes
    assert code == 0
    assert (line["status"], line["replicas"], line["duplicates"]) == ("unchanged", 2, 5)
    assert snapshot(tmp_path) == before

    write_replica_file(tmp_path, "c", name, [commodity(21)])
    code, [line], _ = merge(tmp_path)
    assert (line["status"], line["messages"], line["replicas"]) == ("merged", 11, 3)
    merged = lines_of(tmp_path / "eddn" / name)
    assert sorted(number_of(m) for m in merged) == [*range(1, 20, 2), 21]
    _, records, attempts = snapshot(tmp_path)
    assert attempts == before[2] + 1
    assert [r["records"] for r in records if r["name"] == f"eddn/{name}"] == [11]


def test_open_hours_and_the_current_hour_of_a_running_recorder_wait(tmp_path: Path) -> None:
    now = time.strftime("%Y-%m-%dT%H", time.gmtime())
    write_replica_file(tmp_path, "a", "journal-1/2026-12-03T07.jsonl.gz", [journal(1)])
    write_replica_file(tmp_path, "a", "journal-1/2026-12-03T08.jsonl.gz", [journal(2)])
    open_part = tmp_path / "eddn/_replicas/b/journal-1/2026-12-03T08.jsonl.gz.part"
    open_part.parent.mkdir(parents=True)
    open_part.write_bytes(gzip.compress(b"{}\n"))  # b is still writing 08
    write_replica_file(tmp_path, "a", f"journal-1/{now}.jsonl.gz", [journal(3)])
    with destination_lock(tmp_path / "eddn/_replicas/a"):  # a recorder of "a" runs
        code, lines, stderr = merge(tmp_path)
        assert code == 0, stderr
        assert [line["hour"] for line in lines] == ["2026-12-03T07"]
    open_part.unlink()
    code, lines, _ = merge(tmp_path)  # nothing open, no recorder: the current hour too
    assert [(line["hour"], line["status"]) for line in lines] == [
        ("2026-12-03T07", "unchanged"), ("2026-12-03T08", "merged"), (now, "merged")]  # fmt: skip


def test_runs_spilled_to_disk_merge_to_the_same_bytes_as_one_run_in_memory(tmp_path: Path) -> None:
    name = "journal-1/2026-12-03T07.jsonl.gz"
    merged: list[bytes] = []
    for dest, run_bytes in ((tmp_path / "memory", RUN_BYTES), (tmp_path / "spilled", 4096)):
        write_replica_file(dest, "a", name, [journal(n) for n in range(0, 300)])
        write_replica_file(dest, "b", name, [journal(n) for n in range(150, 450)][::-1])
        with ManifestStore(dest / "manifest.sqlite3") as store:
            result = merge_hour(dest, store, "tcp://relay", "journal-1", "2026-12-03T07",
                                run_bytes=run_bytes)  # fmt: skip
        assert (result.messages, result.duplicates, result.truncated) == (450, 150, 0)
        merged.append((dest / "eddn" / name).read_bytes())
        assert not list((dest / "eddn").glob(".merge-*"))  # the runs are gone
    assert merged[0] == merged[1]
    stamps = [m["header"]["gatewayTimestamp"] for m in lines_of(tmp_path / "spilled/eddn" / name)]
    assert stamps == sorted(stamps)
