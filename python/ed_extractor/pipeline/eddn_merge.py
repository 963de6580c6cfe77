"""Merge the EDDN replicas' hour files into one file per schema and hour, each message once."""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ed_extractor.errors import LockError, StorageError
from ed_extractor.manifest import Manifest, ManifestRecord
from ed_extractor.paths import PART_SUFFIX, is_whole_file, part_path, resolve_inside
from ed_extractor.pipeline.eddn_coverage import REPLICAS_FOLDER, covered_seconds
from ed_extractor.pipeline.gzip_lines import GzipLines
from ed_extractor.pipeline.lock import destination_lock
from ed_extractor.services.file_transfer.landing import land, open_part_sink

log = logging.getLogger(__name__)

HOUR_FORMAT = "%Y-%m-%dT%H"
FILE_SUFFIX = ".jsonl.gz"
SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_]+-[A-Za-z0-9_.]+$")  # commodity-3, journal-1
HOUR_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
GZIP_LEVEL = 6  # the canonical file: a fixed level, and zlib's gzip header has mtime 0
RUN_BYTES = 32 << 20  # lines sorted in memory at once; more spill to sorted runs on disk
RUN_READ_BYTES = 16 << 10  # compressed bytes read from each run at a time (many runs are open)
MERGE_LOCK_WAIT_S = 600.0  # a merge waits this long for another merge of the same destination
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RUN_ENTRY = struct.Struct(">q16sI")  # gateway time (µs), content hash, line length
_NO_TIMESTAMP = 2**62  # a line without a readable gatewayTimestamp sorts after every other
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_BATCH = 1 << 20

MergeStatus = Literal["merged", "unchanged"]
Entry = tuple[int, bytes, bytes]  # (gateway time in µs, 16-byte content hash, line)


@dataclass(frozen=True)
class MergeResult:
    """One schema-hour considered by a merge (one ``eddn merge --json`` line).

    ``duplicates`` and ``truncated`` are None when the hour was found up to date without
    re-reading its replica files.
    """

    schema: str
    hour: str
    replicas: int
    messages: int
    duplicates: int | None
    truncated: int | None
    path: str
    status: MergeStatus

    def as_dict(self) -> dict[str, Any]:
        """The fields by name."""
        return asdict(self)


def canonical_name(schema: str, hour: str) -> str:
    """The manifest name (and path under dest) of a merged hour file."""
    return f"eddn/{schema}/{hour}{FILE_SUFFIX}"


def replica_name_of(replica: str, schema: str, hour: str) -> str:
    """The manifest name (and path under dest) of one replica's hour file."""
    return f"{REPLICAS_FOLDER}/{replica}/{schema}/{hour}{FILE_SUFFIX}"


def gateway_time_us(line: bytes) -> int:
    """A line's ``header.gatewayTimestamp`` in µs since 1970 (naive: UTC); else _NO_TIMESTAMP."""
    try:
        stamp = json.loads(line)["header"]["gatewayTimestamp"]
        moment = datetime.fromisoformat(stamp)
    except (ValueError, TypeError, KeyError, RecursionError):
        return _NO_TIMESTAMP
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def entry_of(line: bytes) -> Entry:
    """The sort key and identity of a line: its gateway time and a 16-byte hash of its bytes.

    Every replica writes a message as the same canonical JSON of the relay's decompressed bytes
    (json.loads then json.dumps with fixed separators: a pure function of those bytes), so equal
    lines are the same relay message and the hash of the line is the message's identity.
    """
    return gateway_time_us(line), hashlib.blake2b(line, digest_size=16).digest(), line


@dataclass
class _Reading:
    """What reading one hour's replica files found."""

    lines: int = 0
    truncated: int = 0


class _SortedRuns:
    """Entries sorted in memory up to RUN_BYTES, then spilled as zlib-compressed runs in ``tmp``."""

    def __init__(self, tmp: Path, run_bytes: int) -> None:
        self._tmp = tmp
        self._run_bytes = run_bytes
        self._buffer: list[Entry] = []
        self._buffered = 0
        self._runs: list[Path] = []

    def add(self, entry: Entry) -> None:
        self._buffer.append(entry)
        self._buffered += len(entry[2]) + 100
        if self._buffered >= self._run_bytes:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort()
        path = self._tmp / f"run-{len(self._runs)}"
        compressor = zlib.compressobj(1)
        with path.open("wb") as file:
            for stamp, digest, line in self._buffer:
                file.write(compressor.compress(_RUN_ENTRY.pack(stamp, digest, len(line)) + line))
            file.write(compressor.flush())
        self._runs.append(path)
        self._buffer, self._buffered = [], 0

    def merged(self) -> Iterator[Entry]:
        """Every entry added, in (time, hash) order."""
        self._buffer.sort()
        return heapq.merge(self._buffer, *(_read_run(path) for path in self._runs))


def _read_run(path: Path) -> Iterator[Entry]:
    decoder = zlib.decompressobj()
    data = b""
    with path.open("rb") as file:
        while chunk := file.read(RUN_READ_BYTES):
            data += decoder.decompress(chunk)
            offset = 0
            while len(data) - offset >= _RUN_ENTRY.size:
                stamp, digest, size = _RUN_ENTRY.unpack_from(data, offset)
                end = offset + _RUN_ENTRY.size + size
                if end > len(data):
                    break
                yield stamp, digest, data[offset + _RUN_ENTRY.size : end]
                offset = end
            data = data[offset:]


def _read_replica_files(files: Iterable[Path], runs: _SortedRuns) -> _Reading:
    """Feed every complete line of ``files`` to ``runs``; count lines and cut files."""
    reading = _Reading()
    for path in files:
        try:
            with path.open("rb") as file:
                lines = GzipLines(file)
                for line in lines:
                    runs.add(entry_of(line))
                    reading.lines += 1
        except OSError as exc:
            raise StorageError(path, f"cannot read ({exc.strerror or exc})") from exc
        if not lines.complete:
            reading.truncated += 1
            log.warning("replica file cut short: merged up to its last whole line",
                        extra={"path": str(path)})  # fmt: skip
    return reading


@dataclass(frozen=True)
class _Written:
    """The merged file written to the canonical part file, not yet landed."""

    sha256: str
    blake3: str | None
    bytes: int
    records: int
    uncompressed_bytes: int


def _write_unique(final: Path, entries: Iterator[Entry]) -> _Written:
    """Write each distinct line of the sorted ``entries`` once to ``final``'s part file."""
    sink = open_part_sink(final)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    records = uncompressed = 0
    previous: bytes | None = None
    batch: list[bytes] = []
    try:
        for _, digest, line in entries:
            if digest == previous:  # equal lines have equal times: duplicates are neighbours
                continue
            previous = digest
            batch.append(line)
            records += 1
            uncompressed += len(line) + 1
            if len(batch) >= 256:
                sink.write(compressor.compress(b"\n".join(batch) + b"\n"))
                batch = []
        if batch:
            sink.write(compressor.compress(b"\n".join(batch) + b"\n"))
        sink.write(compressor.flush())
        size = sink.tell()
        digest_hex = sink.finish(fsync=True)
    except OSError as exc:
        sink.abort()
        part_path(final).unlink(missing_ok=True)
        raise StorageError(part_path(final), f"cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        sink.abort()
        part_path(final).unlink(missing_ok=True)
        raise
    return _Written(digest_hex, sink.blake3_hexdigest(), size, records, uncompressed)


def _file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def make_record(
    name: str,
    final: Path,
    written: _Written,
    url: str,
    *,
    coverage_s: float | None = None,
) -> ManifestRecord:
    """The manifest record of a merged hour file (``coverage_s``: seconds of the hour received)."""
    return ManifestRecord(
        name=name,
        url=url,
        final_url=url,
        path=str(final),
        bytes=written.bytes,
        sha256=written.sha256,
        blake3=written.blake3,
        regime="gzip",
        mime_type="application/gzip",
        uncompressed_bytes=written.uncompressed_bytes,
        records=written.records,
        downloaded_at=datetime.now(UTC),
        coverage_s=coverage_s,
    )


@dataclass(frozen=True)
class HourFiles:
    """One schema-hour's replica files: the closed ones, and whether any replica's is still open."""

    schema: str
    hour: str
    closed: tuple[Path, ...]
    open: bool


def replica_hours(dest: Path) -> list[HourFiles]:
    """Every schema-hour some replica has a file of, in (hour, schema) order."""
    found: dict[tuple[str, str], tuple[list[Path], list[bool]]] = {}
    for path in (dest / REPLICAS_FOLDER).glob(f"*/*/*{FILE_SUFFIX}*"):
        is_part = path.name.endswith(FILE_SUFFIX + PART_SUFFIX)
        if not is_part and not path.name.endswith(FILE_SUFFIX):
            continue
        hour = path.name.removesuffix(PART_SUFFIX).removesuffix(FILE_SUFFIX)
        if not HOUR_NAME.match(hour) or not SCHEMA_NAME.match(path.parent.name):
            continue  # not a recorder's file
        closed, parts = found.setdefault((hour, path.parent.name), ([], []))
        if is_part:
            parts.append(True)
        else:
            closed.append(path)
    return [
        HourFiles(schema, hour, tuple(sorted(closed)), bool(parts))
        for (hour, schema), (closed, parts) in sorted(found.items())
        if closed
    ]


def _up_to_date(final: Path, record: ManifestRecord | None, files: Iterable[Path]) -> bool:
    """True when the recorded canonical file is there and no replica file landed after its merge.

    A merge sets the canonical file's mtime to the moment it listed the replica files; a replica
    file landed later has a newer ctime (a rename sets it), and makes the hour merge again.
    """
    if record is None or not is_whole_file(final, record.bytes):
        return False
    merged_at = final.stat().st_mtime_ns
    return all(path.stat().st_ctime_ns <= merged_at for path in files)


def merge_hour(
    dest: Path,
    store: Manifest,
    url: str,
    schema: str,
    hour: str,
    *,
    check_inputs_changed: bool = True,
    run_bytes: int = RUN_BYTES,
) -> MergeResult:
    """Merge every replica's closed file of ``schema``'s ``hour`` into its canonical file.

    The files are listed under the merge lock (a merge waiting for another sees what that one saw,
    and more).
    With ``check_inputs_changed`` an hour whose replica files all landed before its last merge is
    reported unchanged without reading them. Otherwise the files are read, sorted by gateway time
    (ties and missing times: by content hash) and each distinct line written once; the result lands
    and is recorded only when it differs from the canonical file already there.
    """
    name = canonical_name(schema, hour)
    final = resolve_inside(dest, name)
    with destination_lock(dest / "eddn", wait_s=MERGE_LOCK_WAIT_S):
        listed_at = time.time_ns()
        files = closed_files_of(dest, schema, hour)
        record = store.get(name)
        replicas = len(files)
        if check_inputs_changed and _up_to_date(final, record, files):
            assert record is not None
            return MergeResult(schema, hour, replicas, record.records or 0, None, None,
                               str(final), "unchanged")  # fmt: skip
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=dest / "eddn", prefix=".merge-") as tmp:
            runs = _SortedRuns(Path(tmp), run_bytes)
            reading = _read_replica_files(files, runs)
            written = _write_unique(final, runs.merged())
        status: MergeStatus = "merged"
        if record is not None and record.sha256 == written.sha256 == _file_sha256(final):
            part_path(final).unlink()
            status = "unchanged"
        else:
            land(part_path(final), final)
            new = make_record(name, final, written, url, coverage_s=_hour_covered(dest, hour))
            store.put(new, elapsed_s=time.monotonic() - started, bytes_transferred=written.bytes)
        os.utime(final, ns=(listed_at, listed_at))
    duplicates = reading.lines - written.records
    log.info("hour merged", extra={"source": name, "records": written.records,
                                   "duplicates": duplicates, "status": status})  # fmt: skip
    return MergeResult(schema, hour, replicas, written.records, duplicates, reading.truncated,
                       str(final), status)  # fmt: skip


def _hour_covered(dest: Path, hour: str) -> float:
    """Seconds of ``hour`` in which at least one replica was receiving (its coverage logs)."""
    start = datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC)
    return round(covered_seconds(dest, start, start + timedelta(hours=1)), 3)


def replica_is_running(folder: Path) -> bool:
    """True when a recorder holds ``folder``'s lock (probed by a shared lock, released at once)."""
    try:
        with destination_lock(folder, wait_s=0, shared=True):
            return False
    except LockError:
        return True


def mergeable(hour_files: HourFiles, current_hour: str, running: Callable[[], bool]) -> bool:
    """Whether ``eddn merge`` takes the hour: no file of it open, and it is over or none records."""
    if hour_files.open:
        log.info("hour still being written; left for a later merge",
                 extra={"source": canonical_name(hour_files.schema, hour_files.hour)})  # fmt: skip
        return False
    return hour_files.hour < current_hour or not running()


def merge_closed_hours(
    dest: Path,
    store: Manifest,
    url: str,
    *,
    now: datetime | None = None,
    report: Callable[[MergeResult], None] = lambda result: None,
) -> list[MergeResult]:
    """Merge every schema-hour whose replica files are all closed (``eddn merge``)."""
    current_hour = (now or datetime.now(UTC)).astimezone(UTC).strftime(HOUR_FORMAT)
    folders = [path for path in (dest / REPLICAS_FOLDER).glob("*") if path.is_dir()]
    running_cache: list[bool] = []

    def running() -> bool:
        if not running_cache:
            running_cache.append(any(replica_is_running(folder) for folder in folders))
        return running_cache[0]

    results = []
    for hour_files in replica_hours(dest):
        if mergeable(hour_files, current_hour, running):
            result = merge_hour(dest, store, url, hour_files.schema, hour_files.hour)
            report(result)
            results.append(result)
    return results


def closed_files_of(dest: Path, schema: str, hour: str) -> list[Path]:
    """Every replica's closed file of one schema-hour."""
    return sorted((dest / REPLICAS_FOLDER).glob(f"*/{schema}/{hour}{FILE_SUFFIX}"))
