"""The EDDN recorder against a real local ZeroMQ publisher: files, hours, reconnects, signals."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from prometheus_client.parser import text_string_to_metric_families

from ed_extractor.manifest import ManifestStore
from ed_extractor.metrics import PeriodicExport, RunMetrics
from ed_extractor.pipeline.eddn_stream import (
    MAX_FRAME_BYTES,
    MAX_INFLATED_BYTES,
    EddnRecorder,
    MalformedMessageError,
    StreamStats,
    decode_message,
    default_replica,
    run_stream,
    schema_name,
)
from ed_extractor.pipeline.gzip_lines import GzipLineFile
from tests.eddn_relay import Relay, commodity, journal, pack, sandbox_message
from tests.test_cli import json_lines

HOUR = datetime(2026, 12, 3, 7, 59, 58, tzinfo=UTC)
STATS_KEYS = {"received", "written", "dropped", "malformed", "reconnects", "files"}


@pytest.fixture
def relay() -> Iterator[Relay]:
    publisher = Relay()
    yield publisher
    publisher.close()


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of a gzip file; gzip.decompress fails on a cut or damaged file."""
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


class Recording:
    """run_stream in a thread, with a clock the test moves."""

    def __init__(self, dest: Path, endpoint: str, **options: Any) -> None:
        self.now = HOUR
        self.stop = threading.Event()
        self.result: StreamStats | None = None
        schemas = options.pop("schemas", None)
        replica = options.pop("replica", None)
        options.setdefault("silence_timeout_s", 60.0)
        ready = threading.Event()

        def target() -> None:  # the manifest's connection belongs to the recording thread
            with ManifestStore(dest / "manifest.sqlite3") as store:
                self.recorder = EddnRecorder(dest, store, endpoint, clock=lambda: self.now,
                                             schemas=schemas, replica=replica)  # fmt: skip
                ready.set()
                self.result = run_stream(self.recorder, endpoint, stop=self.stop, **options)

        self.thread = threading.Thread(target=target)
        self.thread.start()
        ready.wait(timeout=10)

    def received(self, count: int) -> None:
        wait_until(lambda: self.recorder.stats.received >= count)

    def finish(self) -> StreamStats:
        self.stop.set()
        self.thread.join(timeout=20)
        assert self.result is not None
        return self.result


# --- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("https://eddn.edcd.io/schemas/commodity/3", ("commodity-3", False)),
        ("https://eddn.edcd.io/schemas/journal/1/test", ("journal-1", True)),
        ("https://eddn.edcd.io/schemas/fsssignaldiscovered/1", ("fsssignaldiscovered-1", False)),
    ],
)
def test_schema_names(ref: str, expected: tuple[str, bool]) -> None:
    assert schema_name(ref) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not zlib at all", "not zlib"),
        (zlib.compress(b'{"$schemaRef": '), "not JSON"),
        (zlib.compress(b"[1, 2]"), "not a JSON object"),
        (pack({**commodity(1), "$schemaRef": None}), "no \\$schemaRef"),
        (pack({**commodity(1), "header": {"uploaderID": "x"}}), "header lacks"),
        (pack({k: v for k, v in commodity(1).items() if k != "message"}), "no message"),
        (pack({**commodity(1), "$schemaRef": "https://eddn.edcd.io/schemas/../.."}), "unusable"),
        (pack({**commodity(1), "$schemaRef": "x"}), "unusable"),
    ],
)
def test_malformed_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_message(raw)


# --- recording from a real publisher -------------------------------------------------------------


def test_the_files_hold_exactly_the_good_messages_in_order_across_hours_and_a_restart(
    relay: Relay, tmp_path: Path
) -> None:
    recording = Recording(tmp_path, relay.endpoint)
    relay.wait_for_subscriber()
    first_hour = [commodity(1), journal(2), commodity(3)]
    relay.send(first_hour[0])
    relay.send(first_hour[1])
    relay.send_raw(b"\x78\x9c garbage")  # bad zlib
    relay.send_raw(zlib.compress(b'{"$schemaRef": "https://eddn.edcd.io/schemas/commodity/3"'))
    relay.send({**journal(9), "header": {"softwareName": "no uploader"}})  # missing fields
    relay.send(sandbox_message(4))
    relay.send(first_hour[2])
    recording.received(7)

    recording.now = HOUR + timedelta(seconds=5)  # 08:00:03: the 07 files are closed
    wait_until(lambda: recording.recorder.stats.files == 2)
    relay.send(commodity(5))
    recording.received(8)
    relay.restart()  # the relay goes away and comes back on the same port
    relay.wait_for_subscriber()
    relay.send(journal(6))
    relay.send(commodity(7))
    recording.received(10)
    stats = recording.finish()

    assert stats.as_dict() == {"received": 10, "written": 6, "dropped": 1, "malformed": 3,
                               "reconnects": 0, "files": 4}  # fmt: skip
    eddn = tmp_path / "eddn"
    assert lines_of(eddn / "commodity-3" / "2026-12-03T07.jsonl.gz") == [commodity(1), commodity(3)]
    assert lines_of(eddn / "journal-1" / "2026-12-03T07.jsonl.gz") == [journal(2)]
    assert lines_of(eddn / "commodity-3" / "2026-12-03T08.jsonl.gz") == [commodity(5), commodity(7)]
    assert lines_of(eddn / "journal-1" / "2026-12-03T08.jsonl.gz") == [journal(6)]
    canonical = [
        "eddn/commodity-3/2026-12-03T07.jsonl.gz", "eddn/commodity-3/2026-12-03T08.jsonl.gz",
        "eddn/journal-1/2026-12-03T07.jsonl.gz", "eddn/journal-1/2026-12-03T08.jsonl.gz",
    ]  # fmt: skip
    # the replica's own files (default replica: the host name), each merged into the canonical one
    own = [name.replace("eddn/", f"eddn/_replicas/{default_replica()}/") for name in canonical]
    written = eddn.rglob("*")
    assert sorted(
        str(p.relative_to(tmp_path)) for p in written if p.is_file() and p.name[0] != "."
    ) == (sorted(canonical + own))
    for name in canonical:
        assert lines_of(tmp_path / name) == lines_of(tmp_path / own[canonical.index(name)])
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        records = store.records()
    assert [r.name for r in records] == sorted(own + canonical)
    for record in records:
        data = Path(record.path).read_bytes()
        assert record.sha256 == hashlib.sha256(data).hexdigest()
        assert record.blake3 == blake3(data).hexdigest()  # landed like every other file
        assert (record.bytes, record.regime, record.url) == (len(data), "gzip", relay.endpoint)
        assert record.records == len(gzip.decompress(data).splitlines())


def test_only_the_configured_schemas_are_kept(relay: Relay, tmp_path: Path) -> None:
    recording = Recording(tmp_path, relay.endpoint, schemas=frozenset({"journal-1"}))
    relay.wait_for_subscriber()
    for n in range(3):
        relay.send(commodity(n))
        relay.send(journal(n))
    recording.received(6)
    stats = recording.finish()
    assert (stats.written, stats.dropped, stats.files) == (3, 3, 1)
    assert not (tmp_path / "eddn" / "commodity-3").exists()
    assert lines_of(tmp_path / "eddn/journal-1/2026-12-03T07.jsonl.gz") == [
        journal(n) for n in range(3)
    ]


def test_a_silent_stream_gets_a_new_socket(relay: Relay, tmp_path: Path) -> None:
    recording = Recording(tmp_path, relay.endpoint, silence_timeout_s=0.4)
    relay.wait_for_subscriber()
    relay.send(commodity(1))
    recording.received(1)
    relay.wait_for_subscriber(timeout_s=5)  # the silence has made it subscribe again
    relay.send(commodity(2))
    recording.received(2)
    stats = recording.finish()
    assert stats.reconnects >= 1
    assert lines_of(tmp_path / "eddn/commodity-3/2026-12-03T07.jsonl.gz") == [
        commodity(1),
        commodity(2),
    ]


def test_a_second_run_in_the_same_hour_adds_to_the_hours_file(relay: Relay, tmp_path: Path) -> None:
    for n in (1, 2):
        recording = Recording(tmp_path, relay.endpoint)
        relay.wait_for_subscriber()
        relay.send(journal(n))
        recording.received(1)
        recording.finish()
        relay.restart()  # a fresh socket forgets the old subscriber
    assert lines_of(tmp_path / "eddn/journal-1/2026-12-03T07.jsonl.gz") == [journal(1), journal(2)]


# --- the hourly file --------------------------------------------------------------------------


def test_a_killed_writers_part_file_is_recovered_up_to_its_last_whole_line(tmp_path: Path) -> None:
    final = tmp_path / "eddn" / "journal-1" / "2026-12-03T07.jsonl.gz"
    published = GzipLineFile(final)
    published.write_line(b'{"n": 0}')
    published.close()
    killed = GzipLineFile(final)
    for n in range(1, 50):
        killed.write_line(json.dumps({"n": n}).encode())
    killed.flush()
    killed.abort()  # as a kill -9 leaves it: no gzip trailer
    part = final.with_name(final.name + ".part")
    with part.open("r+b") as file:  # and cut inside the last line
        file.truncate(part.stat().st_size - 3)
    assert lines_of(final) == [{"n": 0}]  # the published file is untouched
    resumed = GzipLineFile(final)
    resumed.write_line(b'{"n": "new"}')
    resumed.close()
    lines = lines_of(final)
    assert lines[0] == {"n": 0}
    assert lines[-1] == {"n": "new"}
    assert [line["n"] for line in lines[:-1]] == list(range(len(lines) - 1))
    assert len(lines) >= 40
    assert not part.exists()


def test_a_part_file_left_by_a_killed_run_is_finished_and_recorded_at_start(
    relay: Relay, tmp_path: Path
) -> None:
    final = tmp_path / "eddn/_replicas" / default_replica() / "journal-1/2026-12-03T05.jsonl.gz"
    killed = GzipLineFile(final)
    for n in range(3):
        killed.write_line(json.dumps(journal(n)).encode())
    killed.flush()
    killed.abort()
    recording = Recording(tmp_path, relay.endpoint)
    stats = recording.finish()
    assert stats.files == 1
    assert lines_of(final) == [journal(n) for n in range(3)]
    assert not final.with_name(final.name + ".part").exists()
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        record = store.get(f"eddn/_replicas/{default_replica()}/journal-1/2026-12-03T05.jsonl.gz")
        merged = store.get("eddn/journal-1/2026-12-03T05.jsonl.gz")
    assert record is not None
    assert record.records == 3
    assert merged is not None  # the recovered hour is merged like any hour the recorder closes
    assert lines_of(tmp_path / merged.name) == lines_of(final)


# --- the command ----------------------------------------------------------------------------------


def start_eddn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ed_extractor", "eddn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ED_EXTRACTOR_LOG_FORMAT": "json", **(env or {})},
    )


def samples_of(path: Path) -> dict[str, float]:
    """A Prometheus text file's samples by name and labels (``name{a="x",b="y"}``); {} if absent."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_a_running_recorder_exports_its_metrics_before_it_exits(
    relay: Relay, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics" / "eddn.prom"
    env = {"ED_EXTRACTOR_METRICS_FILE": str(metrics), "ED_EXTRACTOR_EDDN_METRICS_INTERVAL_S": "0.5"}
    process = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path / "data"), env=env)
    try:
        relay.wait_for_subscriber(timeout_s=30)
        wait_until(lambda: "ed_extractor_eddn_received_total" in samples_of(metrics))
        for n in range(30):
            relay.send(commodity(n))
        relay.send_raw(b"junk")
        wait_until(lambda: samples_of(metrics).get("ed_extractor_eddn_received_total") == 31)
        running = samples_of(metrics)
        assert process.poll() is None, "the metrics must come while the recorder runs"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert running["ed_extractor_eddn_written_total"] == 30
    assert running["ed_extractor_eddn_malformed_total"] == 1
    assert running["ed_extractor_eddn_files_total"] == 0  # the hour's file is still open
    final = samples_of(metrics)  # and on exit, with the file closed and recorded
    assert final["ed_extractor_eddn_files_total"] == 1
    assert final["ed_extractor_eddn_written_total"] == 30


def test_closing_an_hour_file_exports_the_metrics_at_once(relay: Relay, tmp_path: Path) -> None:
    path = tmp_path / "eddn.prom"
    live = PeriodicExport(RunMetrics(metrics_file=path), interval_s=3600)  # only the closes count
    recording = Recording(tmp_path, relay.endpoint,
                          tick=lambda r: live(r.outcomes, r.stats.as_dict()))  # fmt: skip
    try:
        relay.wait_for_subscriber(timeout_s=30)
        relay.send(commodity(1))
        recording.received(1)
        wait_until(lambda: "ed_extractor_eddn_files_total" in samples_of(path))  # at the start
        assert samples_of(path)["ed_extractor_eddn_files_total"] == 0
        recording.now = HOUR + timedelta(seconds=5)  # 08:00: the 07 file is closed
        wait_until(lambda: samples_of(path).get("ed_extractor_eddn_files_total") == 1)
        samples = samples_of(path)
    finally:
        recording.finish()
    source = f'source="eddn/_replicas/{default_replica()}/commodity-3/2026-12-03T07.jsonl.gz"'
    assert samples[f'ed_extractor_source_status{{{source},status="downloaded"}}'] == 1
    assert samples["ed_extractor_eddn_written_total"] == 1


def test_sigterm_closes_every_file_cleanly(relay: Relay, tmp_path: Path) -> None:
    process = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path), "--json")
    relay.wait_for_subscriber(timeout_s=30)
    sent = []
    for n in range(200):
        sent.append(commodity(n) if n % 3 else journal(n))
        relay.send(sent[-1])
    time.sleep(2.0)  # for the recorder to take them in; it then closes its files on SIGTERM
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    [stats] = json_lines(stdout)
    assert stats == {"received": 200, "written": 200, "dropped": 0, "malformed": 0,
                     "reconnects": 0, "files": 2}  # fmt: skip
    files = sorted((tmp_path / "eddn" / "_replicas").rglob("*.jsonl.gz"))  # in receipt order
    assert [f.parent.name for f in files] == ["commodity-3", "journal-1"]
    recorded = [line for f in files for line in lines_of(f)]
    assert sorted(recorded, key=sent.index) == sent
    commodities = [m for m in sent if m["$schemaRef"].endswith("commodity/3")]
    assert lines_of(files[0]) == commodities
    # the merged file of the hour: the same messages, in order of the gateway's timestamp
    merged = lines_of(tmp_path / "eddn" / "commodity-3" / files[0].name)
    assert sorted(merged, key=commodities.index) == commodities
    stamps = [m["header"]["gatewayTimestamp"] for m in merged]
    assert stamps == sorted(stamps)
    assert not list(tmp_path.rglob("*.part"))


def test_a_bounded_run_ends_by_itself_and_prints_its_counters(relay: Relay, tmp_path: Path) -> None:
    process = start_eddn("--endpoint", relay.endpoint, "--dest", str(tmp_path), "--duration", "4",
                         "--schemas", "commodity-3", "--json")  # fmt: skip
    relay.wait_for_subscriber(timeout_s=30)
    relay.send(commodity(1))
    relay.send(journal(2))
    relay.send_raw(b"junk")
    relay.send(sandbox_message(3))
    relay.send(commodity(4))
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    [stats] = json_lines(stdout)
    assert set(stats) == STATS_KEYS
    assert stats == {"received": 5, "written": 2, "dropped": 2, "malformed": 1,
                     "reconnects": 0, "files": 1}  # fmt: skip
    [path] = (tmp_path / "eddn" / "commodity-3").glob("*.jsonl.gz")
    assert lines_of(path) == [commodity(1), commodity(4)]
    assert datetime.strptime(path.name, "%Y-%m-%dT%H.jsonl.gz").replace(tzinfo=UTC) <= datetime.now(
        UTC
    )
    assert "malformed message" in stderr


@pytest.mark.parametrize(
    "args", [["--duration", "0"], ["--silence-timeout", "-1"], ["--endpoint", "http://x"]]
)
def test_bad_options_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    process = start_eddn(*args, "--dest", str(tmp_path))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert len(stderr.strip().splitlines()) == 1


# --- hostile frames -------------------------------------------------------------------------------


def zlib_bomb(inflated_bytes: int) -> bytes:
    """zlib data of ``inflated_bytes`` zeros (~1/1000 of it), built 1 MiB at a time."""
    compressor = zlib.compressobj(9)
    zeros = bytes(2**20)
    pieces = [compressor.compress(zeros) for _ in range(inflated_bytes // len(zeros))]
    return b"".join([*pieces, compressor.flush()])


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    bomb = zlib_bomb(2**30)
    assert len(bomb) < MAX_FRAME_BYTES  # it passes the socket: the inflate cap must stop it
    return bomb


def test_a_message_may_inflate_to_the_cap_and_not_one_byte_more() -> None:
    filler = MAX_INFLATED_BYTES - len(json.dumps({**journal(1), "pad": ""}).encode())
    at_cap = json.dumps({**journal(1), "pad": "x" * filler}).encode()
    assert len(at_cap) == MAX_INFLATED_BYTES
    assert decode_message(zlib.compress(at_cap)).document["pad"] == "x" * filler
    with pytest.raises(MalformedMessageError, match=f"inflates to more than {MAX_INFLATED_BYTES}"):
        decode_message(zlib.compress(at_cap + b" "))
    with pytest.raises(MalformedMessageError, match="truncated"):
        decode_message(zlib.compress(at_cap)[:-10])


#: Runs ``ed-extractor eddn ARGS`` from a small fresh process and reports the peak RSS of that
#: child alone (as tests/test_api_client.py does: pytest's size would start the high-water mark).
_MEASURED_EDDN = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "ed_extractor", "eddn", *sys.argv[1:]])
print(f"peak-rss-kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(done.returncode)
"""


def record_measured(
    relay: Relay, dest: Path, send: Callable[[], None]
) -> tuple[dict[str, object], str, float]:
    """Run ``eddn --duration 12`` while ``send`` publishes; its counters, stderr, peak RSS (MiB)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _MEASURED_EDDN, "--endpoint", relay.endpoint,
         "--dest", str(dest), "--duration", "12", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ED_EXTRACTOR_LOG_FORMAT": "json"},
    )  # fmt: skip
    try:
        relay.wait_for_subscriber(timeout_s=30)
        send()
    finally:
        stdout, stderr = process.communicate(timeout=120)
    stderr, _, peak = stderr.rstrip().rpartition("\n")
    assert process.returncode == 0, stderr
    [stats] = json_lines(stdout)
    return stats, stderr, int(peak.removeprefix("peak-rss-kib=")) / 1024


def test_zlib_bombs_are_malformed_and_memory_stays_bounded(
    relay: Relay, tmp_path: Path, gib_bomb: bytes
) -> None:
    sent: list[dict[str, Any]] = []

    def send() -> None:
        for n in range(3):  # a good message, a 1 MB frame that inflates to 1 GiB, a good one
            sent.append(commodity(2 * n))
            relay.send(sent[-1])
            relay.send_raw(gib_bomb)
            sent.append(journal(2 * n + 1))
            relay.send(sent[-1])

    stats, stderr, peak_mib = record_measured(relay, tmp_path, send)
    assert stats == {"received": 9, "written": 6, "dropped": 0, "malformed": 3,
                     "reconnects": 0, "files": 2}  # fmt: skip
    recorded = [
        line  # the merged files (each replica's own are under eddn/_replicas/)
        for f in sorted((tmp_path / "eddn").glob("[!_]*/*.jsonl.gz"))
        for line in lines_of(f)
    ]
    assert sorted(recorded, key=sent.index) == sent
    assert stderr.count(f"inflates to more than {MAX_INFLATED_BYTES} bytes") == 3
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB"


def test_a_flood_of_frames_at_the_socket_limit_is_held_back_not_buffered(
    relay: Relay, tmp_path: Path, gib_bomb: bytes
) -> None:
    noise = os.urandom(len(gib_bomb))

    def send() -> None:  # 400 MB at once: more than the recorder takes in while they arrive
        for n in range(400):
            relay.send_raw(gib_bomb if n % 2 else noise)
        relay.send(commodity(1))

    stats, _, peak_mib = record_measured(relay, tmp_path, send)
    assert (stats["received"], stats["malformed"], stats["written"]) == (401, 400, 1)
    [path] = (tmp_path / "eddn" / "commodity-3").glob("*.jsonl.gz")
    assert lines_of(path) == [commodity(1)]
    assert peak_mib < 150, f"peak RSS {peak_mib:.0f} MiB"  # 431 MiB with libzmq's default queue


def test_a_frame_over_the_socket_limit_costs_the_connection_which_comes_back(
    relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recording = Recording(tmp_path, relay.endpoint)  # silence timeout 60 s: not what brings it back
    try:
        relay.wait_for_subscriber()
        relay.send(commodity(1))
        recording.received(1)
        relay.send_raw(os.urandom(MAX_FRAME_BYTES + 1))  # libzmq refuses it, drops the connection
        started = time.monotonic()
        relay.wait_for_subscriber(timeout_s=10)  # the recorder has subscribed again
        rejoined_s = time.monotonic() - started
        relay.send(journal(2))
        relay.send(commodity(3))
        recording.received(3)
    finally:
        stats = recording.finish()
    assert (stats.received, stats.written, stats.malformed, stats.reconnects) == (3, 3, 0, 0)
    assert lines_of(tmp_path / "eddn/commodity-3/2026-12-03T07.jsonl.gz") == [
        commodity(1),
        commodity(3),
    ]
    assert lines_of(tmp_path / "eddn/journal-1/2026-12-03T07.jsonl.gz") == [journal(2)]
    assert rejoined_s < 5
    assert "dropped and not retried" in caplog.text
