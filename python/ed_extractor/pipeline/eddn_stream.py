"""Record the EDDN relay (ZeroMQ, zlib JSON) into a replica's hour files, merged at hour close."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket as socket_module
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import zmq
from zmq.utils.monitor import recv_monitor_message

from ed_extractor.errors import UsageError
from ed_extractor.manifest import Manifest, ManifestRecord
from ed_extractor.paths import PART_SUFFIX, resolve_inside
from ed_extractor.pipeline.eddn_coverage import REPLICAS_FOLDER, CoverageLog
from ed_extractor.pipeline.eddn_merge import (
    FILE_SUFFIX,
    HOUR_FORMAT,
    HOUR_NAME,
    SCHEMA_NAME,
    merge_hour,
    replica_name_of,
)
from ed_extractor.pipeline.gzip_lines import GzipLineFile
from ed_extractor.pipeline.spansh_dump import SourceOutcome
from ed_extractor.services.file_transfer.base import Destination
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://eddn.edcd.io:9500"
HEADER_FIELDS = ("uploaderID", "softwareName", "softwareVersion", "gatewayTimestamp")
GZIP_MIME_TYPE = "application/gzip"
POLL_INTERVAL_S = 0.2  # how quickly a stop request, the end of --duration or a new hour is seen
DRAIN_BATCH = 1000  # messages taken per wake-up before the clocks are looked at again
FLUSH_INTERVAL_S = 5.0  # the compressor is flushed this often, so a killed run loses less
# Hostile frames. A real relay frame is one zlib-compressed JSON message: a few KB, the biggest
# (a large market's commodity-3, a long navroute) some tens of KB, and EDCD's gateway keeps an
# upload's body in memory only up to 1 MiB (bottle's MEMFILE_MAX in its Gateway.py). A frame over
# MAX_FRAME_BYTES (ZMQ_MAXMSGSIZE: libzmq refuses it before allocating it, and drops that
# connection) is not EDDN's; zlib inflates JSON some 5-10x, so a message that inflates to more than
# MAX_INFLATED_BYTES is not EDDN's either (a zlib bomb inflates ~1000x: 1 MiB would be 1 GiB).
MAX_FRAME_BYTES = 2**20
MAX_INFLATED_BYTES = 4 * 2**20
# Frames libzmq may hold for us (ZMQ_RCVHWM; its default, 1000, is up to 1 GiB of 1 MiB frames). A
# stalled loop (an hour closing) loses nothing sooner: past these the kernel's TCP buffer (MBs:
# thousands of real messages) and the relay's queue (EDCD's Relay.py: SNDHWM 500) wait their turn.
QUEUED_FRAMES = 32
REJOIN_AFTER_S = 1.0  # a dropped connection libzmq has not retried by then is given up: rejoin
_REPLICA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def default_replica() -> str:
    """The default replica name: the host name's first label (the pod name in Kubernetes)."""
    return socket_module.gethostname().split(".")[0]


def checked_replica(name: str) -> str:
    """``name`` if it can name a replica folder (letters, digits, ``-``, ``_``); else UsageError."""
    if not _REPLICA_NAME.match(name):
        raise UsageError(
            f"invalid replica name {name!r}: use 1-63 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


class MalformedMessageError(ValueError):
    """A message that is not zlib-compressed JSON of EDDN's envelope."""


@dataclass(frozen=True)
class EddnMessage:
    """A decoded message: its schema name (``commodity-3``), whether it is a test, the object."""

    schema: str
    test: bool
    document: dict[str, Any]


def schema_name(schema_ref: str) -> tuple[str, bool]:
    """``https://eddn.edcd.io/schemas/commodity/3`` -> (``commodity-3``, is a ``/test`` schema)."""
    segments = [part for part in urlsplit(schema_ref).path.split("/") if part]
    test = bool(segments) and segments[-1] == "test"
    if test:
        segments = segments[:-1]
    name = "-".join(segments[-2:])
    if len(segments) < 2 or not SCHEMA_NAME.match(name):
        raise MalformedMessageError(f"unusable $schemaRef {schema_ref!r}")
    return name, test


def inflate(raw: bytes) -> bytes:
    """The zlib data ``raw`` inflated, never more than MAX_INFLATED_BYTES of it in memory."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(raw, MAX_INFLATED_BYTES)
        # Input left over, or output zlib still holds once all input is taken: over the cap.
        over = bool(inflater.unconsumed_tail) or (
            not inflater.eof and bool(inflater.decompress(b"", 1))
        )
    except zlib.error as exc:
        raise MalformedMessageError(f"not zlib data ({exc})") from None
    if over:
        raise MalformedMessageError(f"inflates to more than {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise MalformedMessageError("not zlib data (incomplete or truncated stream)")
    return text


def decode_message(raw: bytes) -> EddnMessage:
    """Decompress and parse one relay message; MalformedMessageError says what is wrong."""
    text = inflate(raw)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedMessageError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise MalformedMessageError("not a JSON object")
    ref = document.get("$schemaRef")
    header = document.get("header")
    if not isinstance(ref, str):
        raise MalformedMessageError("no $schemaRef")
    if not isinstance(header, dict) or any(
        not isinstance(header.get(f), str) for f in HEADER_FIELDS
    ):
        raise MalformedMessageError(f"header lacks one of {', '.join(HEADER_FIELDS)}")
    if not isinstance(document.get("message"), dict):
        raise MalformedMessageError("no message object")
    name, test = schema_name(ref)
    return EddnMessage(name, test, document)


@dataclass
class StreamStats:
    """The counters ``eddn --json`` prints on exit."""

    received: int = 0
    written: int = 0
    dropped: int = 0
    malformed: int = 0
    reconnects: int = 0
    files: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)


@dataclass
class _OpenFile:
    hour: str
    file: GzipLineFile
    opened: float = field(default_factory=time.monotonic)


class EddnRecorder:
    """Writes accepted messages to one file per schema and UTC hour, and records closed files.

    The files are the replica's: ``<dest>/eddn/_replicas/<replica>/<schema>/<hour>.jsonl.gz``
    (default replica: the host name). Each closed hour is then merged, in a thread of its own,
    into the canonical ``<dest>/eddn/<schema>/<hour>.jsonl.gz`` from every replica's closed file
    of that hour (other replicas' open files are left to a later merge); an object-store
    destination is not merged (``eddn merge`` works on a folder).
    ``clock`` gives the time of receipt (UTC); a test may pass its own to roll the hour.
    ``schemas``: the schema names to keep (None: all). Test schemas are always dropped.
    """

    def __init__(
        self,
        dest: Path,
        store: Manifest,
        endpoint: str,
        *,
        schemas: frozenset[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        destination: Destination = LOCAL_FOLDER,
        replica: str | None = None,
    ) -> None:
        self._dest = dest
        self.replica = checked_replica(replica if replica is not None else default_replica())
        self._merges: ThreadPoolExecutor | None = None
        self._destination = destination
        self._store = store
        self._endpoint = endpoint
        self._schemas = schemas
        self._clock = clock
        self._open: dict[str, _OpenFile] = {}
        self.stats = StreamStats()
        self.outcomes: list[SourceOutcome] = []

    def handle(self, raw: bytes) -> None:
        """Take one relay message: write it, drop it, or count it as malformed."""
        self.stats.received += 1
        try:
            message = decode_message(raw)
        except MalformedMessageError as exc:
            self.stats.malformed += 1
            log.warning("malformed message: %s", exc, extra={"bytes": len(raw)})
            return
        if message.test or (self._schemas is not None and message.schema not in self._schemas):
            self.stats.dropped += 1
            return
        hour = self.roll()
        line = json.dumps(message.document, ensure_ascii=False, separators=(",", ":"))
        self._file_for(message.schema, hour).write_line(line.encode())
        self.stats.written += 1

    def roll(self) -> str:
        """Close the files of hours that are over; return the current hour."""
        hour = self._clock().astimezone(UTC).strftime(HOUR_FORMAT)
        for schema in [s for s, f in self._open.items() if f.hour != hour]:
            self._close(schema)
        return hour

    def recover(self) -> int:
        """Finish the part files a killed run left (up to their last whole line); return how many.

        Each is published and recorded like a file whose hour has ended; a later message of the
        same hour continues the published file.
        """
        recovered = 0
        folder = self._dest / REPLICAS_FOLDER / self.replica
        for part in sorted(folder.glob(f"*/*{FILE_SUFFIX}{PART_SUFFIX}")):
            schema, hour = part.parent.name, part.name.removesuffix(FILE_SUFFIX + PART_SUFFIX)
            if schema in self._open or not SCHEMA_NAME.match(schema) or not HOUR_NAME.match(hour):
                continue
            self._file_for(schema, hour)
            self._close(schema)
            recovered += 1
        return recovered

    def flush(self) -> None:
        """Push compressed data of every open file to disk."""
        for entry in self._open.values():
            entry.file.flush()

    def close_all(self) -> None:
        """Close, hash and record every open file (each is tried), then finish the merges."""
        errors: list[BaseException] = []
        for schema in list(self._open):
            try:
                self._close(schema)
            except Exception as exc:
                errors.append(exc)
        self.wait_for_merges()
        if errors:
            raise errors[0]

    def wait_for_merges(self) -> None:
        """Wait until every hour handed to the merge thread is merged (or failed, logged)."""
        if self._merges is not None:
            self._merges.shutdown(wait=True)
            self._merges = None

    def _merge_later(self, schema: str, hour: str) -> None:
        """Merge ``schema``'s ``hour`` from every replica's closed file, in the merge thread."""
        if self._destination is not LOCAL_FOLDER:
            return
        if self._merges is None:
            self._merges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eddn-merge")
        self._merges.submit(self._merge, schema, hour)

    def _merge(self, schema: str, hour: str) -> None:
        try:
            merge_hour(self._dest, self._store, self._endpoint, schema, hour,
                       check_inputs_changed=False)  # fmt: skip
        except Exception:  # the recording goes on; `eddn merge` completes the hour later
            log.exception("merging an hour failed", extra={"source": f"eddn/{schema}/{hour}"})

    def _file_for(self, schema: str, hour: str) -> GzipLineFile:
        entry = self._open.get(schema)
        if entry is None:
            final = resolve_inside(self._dest, self._name(schema, hour))
            restored = self._destination.restore(final)  # an object store's file of this hour
            landing = self._destination.landing(final, {"source-url": self._endpoint})
            entry = self._open[schema] = _OpenFile(hour, GzipLineFile(final, landing=landing))
            if restored:  # its lines are in the new part file now
                final.unlink()
        return entry.file

    def _name(self, schema: str, hour: str) -> str:
        return replica_name_of(self.replica, schema, hour)

    def _close(self, schema: str) -> None:
        entry = self._open.pop(schema)
        closed = entry.file.close()
        record = ManifestRecord(
            name=self._name(schema, entry.hour),
            url=self._endpoint,
            final_url=self._endpoint,
            path=self._destination.location(closed.path),
            bytes=closed.bytes,
            sha256=closed.sha256,
            blake3=closed.blake3,
            regime="gzip",
            mime_type=GZIP_MIME_TYPE,
            uncompressed_bytes=closed.uncompressed_bytes,
            records=closed.records,
            downloaded_at=datetime.now(UTC),
        )
        elapsed = time.monotonic() - entry.opened
        self._store.put(record, elapsed_s=elapsed, bytes_transferred=closed.bytes)
        self.stats.files += 1
        self.outcomes.append(SourceOutcome.from_record(record, "downloaded", elapsed))
        log.info("file closed", extra={"source": record.name, "records": closed.records})
        self._merge_later(schema, entry.hour)


_WATCHED_EVENTS = (
    zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED
    | zmq.EVENT_CONNECTED
)  # fmt: skip


class _RelaySocket(zmq.Socket[bytes]):
    """A SUB socket that connects again when libzmq gives its connection to the relay up.

    libzmq (4.3) treats a frame over ZMQ_MAXMSGSIZE as a protocol error: it drops that connection
    and, unlike a lost TCP session (retried every RECONNECT_IVL), never connects again, so the
    recorder would hear nothing until its silence timeout. The socket's monitor tells the two
    apart: a lost session is followed at once by EVENT_CONNECT_RETRIED, a connection given up by
    nothing. ``poll`` looks at the monitor first; ``rejoins`` counts the connections made again.
    """

    relay: str = ""
    events: zmq.Socket[bytes] | None = None
    disconnected_at: float | None = None
    rejoins: int = 0

    def watch(self, endpoint: str) -> None:
        """Connect to ``endpoint`` and follow the connection's events."""
        self.relay = endpoint
        self.events = self.get_monitor_socket(_WATCHED_EVENTS)
        self.connect(endpoint)

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """Connect again if the connection was given up; then zmq.Socket.poll."""
        self._rejoin_if_given_up()
        return super().poll(timeout, flags)

    def _rejoin_if_given_up(self) -> None:
        while self.events is not None and self.events.poll(0):
            event = recv_monitor_message(self.events)["event"]
            dropped = event == zmq.EVENT_DISCONNECTED
            self.disconnected_at = time.monotonic() if dropped else None
        if self.disconnected_at is None or time.monotonic() - self.disconnected_at < REJOIN_AFTER_S:
            return
        log.warning(
            "the relay's connection was dropped and not retried (a frame over %d bytes, or a "
            "protocol error); connecting again", MAX_FRAME_BYTES, extra={"endpoint": self.relay},
        )  # fmt: skip
        self.disconnected_at = None
        self.rejoins += 1
        with contextlib.suppress(zmq.ZMQError):  # whatever is left of it: never two connections
            self.disconnect(self.relay)
        self.connect(self.relay)

    def close(self, linger: int | None = None) -> None:
        """Close the monitor, then the socket."""
        if self.events is not None:
            self.disable_monitor()
            self.events.close(linger=0)
            self.events = None
        super().close(linger=linger)


def _subscribe(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, silence_s: float
) -> zmq.Socket[bytes]:
    """A SUB socket on ``endpoint`` for every topic, with ZMTP heartbeats and TCP keepalive.

    Frames over MAX_FRAME_BYTES are refused by libzmq (which drops that connection; the socket
    connects again, see _RelaySocket), and at most QUEUED_FRAMES wait in it.
    """
    socket = cast(_RelaySocket, context.socket(zmq.SUB, socket_class=_RelaySocket))
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    socket.setsockopt(zmq.RCVHWM, QUEUED_FRAMES)
    heartbeat_ms = max(100, int(silence_s * 1000 / 3))
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RECONNECT_IVL, 100)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 10_000)
    socket.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_ms * 2)
    socket.setsockopt(zmq.HEARTBEAT_TTL, heartbeat_ms * 3)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, max(1, int(silence_s)))
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.watch(endpoint)
    return socket


def _poll_timeout_ms(deadline: float | None, now: float) -> int:
    """How long one poll may wait: POLL_INTERVAL_S, less when the deadline is nearer (>= 1 ms)."""
    wait = POLL_INTERVAL_S if deadline is None else min(POLL_INTERVAL_S, deadline - now)
    return max(1, int(wait * 1000))


def _drain(socket: zmq.Socket[bytes], recorder: EddnRecorder) -> None:
    """Hand ``recorder`` the messages already waiting on ``socket``, at most DRAIN_BATCH of them."""
    for _ in range(DRAIN_BATCH):
        try:
            raw = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        recorder.handle(raw)


class _NoCoverage:
    """What ``run_stream`` tells when no coverage log was given: nothing."""

    def start(self) -> None:
        """No log."""

    def beat_if_due(self) -> None:
        """No log."""

    def silent(self) -> None:
        """No log."""

    def stop(self) -> None:
        """No log."""


def run_stream(
    recorder: EddnRecorder,
    endpoint: str,
    *,
    silence_timeout_s: float,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    tick: Callable[[EddnRecorder], None] | None = None,
    coverage: CoverageLog | None = None,
) -> StreamStats:
    """Subscribe to ``endpoint`` and feed ``recorder`` until ``stop``, or ``duration_s`` is over.

    A stream silent for ``silence_timeout_s`` gets a new socket (a relay restart can leave a TCP
    session dead without either side noticing); every such reconnect is counted. Part files a
    killed run left are finished first; on return, every open file is closed and recorded.
    ``tick`` is called with the recorder at every turn of the loop (at least every 0.2 s).
    ``coverage`` gets start, a beat every heartbeat, silent at a silence reconnect, and stop.
    """
    stop = stop or threading.Event()
    recorder.recover()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    beats = coverage if coverage is not None else _NoCoverage()
    beats.start()
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socket = _subscribe(context, endpoint, silence_timeout_s)
    last_message = last_flush = time.monotonic()
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if socket.poll(_poll_timeout_ms(deadline, now), zmq.POLLIN):
                _drain(socket, recorder)
                last_message = time.monotonic()
            recorder.roll()
            now = time.monotonic()
            if now - last_message > silence_timeout_s:
                log.warning("no message for %.1f s; reconnecting", now - last_message,
                            extra={"endpoint": endpoint})  # fmt: skip
                socket.close(linger=0)
                socket = _subscribe(context, endpoint, silence_timeout_s)
                recorder.stats.reconnects += 1
                last_message = now
                beats.silent()
            else:
                beats.beat_if_due()
            if now - last_flush >= FLUSH_INTERVAL_S:
                recorder.flush()
                last_flush = now
            if tick is not None:
                tick(recorder)
    finally:
        beats.stop()
        socket.close(linger=0)
        context.term()
        recorder.close_all()
    return recorder.stats
