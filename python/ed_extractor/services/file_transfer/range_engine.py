"""The one range engine: 1..N connections fetch ranges of a file into one native PartSink.

Every HTTP and S3 body goes through ``RangeDownload``. One connection is one range: the part file
then grows as a prefix (its length is the resume point; an unknown length is one open-ended
range). Several connections write into a part file of the final size: each takes the next piece
from the front of what nobody fetches yet (window / connections bytes), GETs it through the
source's ``RangeOpener`` (HTTP: ``Range`` + ``If-Range``; S3: a part or a range + ``If-Match``)
and hands each chunk to the sink at its offset; when nothing is left to take, it takes over half
of the largest range in flight (work stealing). The sink (Rust, GIL released) writes, and hashes
and checks the file in order. The sidecar records every range's progress at a bounded interval,
after an fdatasync of the part file, so a killed run (or one cut by a power loss) continues each
range where its bytes stopped. With a ``RampPolicy`` (``--connections auto``) the download starts
with few connections and the controller loop adds more while they raise the measured throughput.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Final

import httpx

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

from ed_extractor.errors import IncompleteBodyError, ProtocolError, VerificationError
from ed_extractor.hashing import PartSink, SinkVerifier
from ed_extractor.headers import if_range_validator, parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.services.file_transfer.base import (
    Connections,
    ContentCheck,
    ContentSummary,
    DownloadRequest,
    DownloadResult,
    LandedFile,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.part_file import PartFile
from ed_extractor.services.file_transfer.ramp import ConnectionRamp, RampPolicy
from ed_extractor.services.file_transfer.resume import ResumePoint, Segment
from ed_extractor.services.file_transfer.segment_table import UNKNOWN_END, Range, SegmentTable

log = logging.getLogger(__name__)

AUTO_CONNECTIONS: Final = 8
AUTO_THRESHOLD: Final = 64 << 20  # auto uses several connections from this size on
MIN_SPLIT: Final = 4 << 20  # a range is split for an idle connection only if both halves reach it
MAX_PIECE: Final = 16 << 20  # connections take the file from the front in pieces of at most
# window / connections (and file / connections), at least MIN_SEGMENT
MIN_SEGMENT: Final = 256 << 10  # no piece is smaller (an explicit N is lowered to fit)
SAVE_INTERVAL_S: Final = 0.25  # the sidecar records progress this often...
SAVE_BYTES: Final = 4 << 20  # ...or after this many new bytes, whichever comes first
REORDER_WINDOW: Final = 32 << 20  # early chunks the sink holds for its in-order hash, at most

#: Opens the GET of the bytes ``[first, end)`` of the file (``end`` None: to its end): a context
#: manager of the streamed response (HTTP sends ``Range`` with ``If-Range``; S3 signs and sends
#: ``If-Match``).
RangeOpener = Callable[[int, int | None], AbstractContextManager[httpx.Response]]


class SegmentsRefused(Exception):
    """The server does not serve the validated ranges: fetch over one connection from scratch.

    A 200 to a ranged GET, or a Content-Range that does not fit; the part file is discarded.
    """


def connections_per_file(wanted: Connections) -> int:
    """The most connections one file may use under the setting ``wanted``."""
    return AUTO_CONNECTIONS if wanted == "auto" else wanted


def ramp_policy(wanted: Connections) -> RampPolicy | None:
    """How the connections of one file grow under ``wanted``: ``auto`` ramps, a number does not."""
    return RampPolicy() if wanted == "auto" else None


def piece_size(total: int, connections: int, window: int) -> int:
    """The piece a connection takes from the front: window / connections, within bounds."""
    share = -(-total // connections)
    return max(min(window // connections, share, MAX_PIECE), MIN_SEGMENT)


def connection_count(request: DownloadRequest, resume: ResumePoint | None) -> int:
    """How many connections ``request`` may use (1: a prefix part file); auto ramps up to it."""
    wanted = request.connections
    if resume is not None:  # continue a part file the way it was written
        if not resume.segments:
            return 1
        return connections_per_file(wanted)
    length = request.expected_length
    validator = if_range_validator(request.expected_etag, request.expected_last_modified)
    if not request.ranges_supported or validator is None or not length:
        return 1
    if wanted == "auto":
        return AUTO_CONNECTIONS if length >= AUTO_THRESHOLD else 1
    return max(1, min(wanted, length // MIN_SEGMENT))


class _CheckFeed:
    """A ContentCheck written in Python as the sink's verifier: fed ``bytes`` in file order."""

    def __init__(self, check: ContentCheck) -> None:
        self._check = check

    def feed(self, data: Buffer) -> None:
        """Hand the next bytes to the check (a copy only when they come as a view)."""
        self._check.feed(data if isinstance(data, bytes) else bytes(data))


def sink_verifier(check: ContentCheck | None) -> SinkVerifier | None:
    """What the sink feeds in file order: the check's native verifier if it has one, else it."""
    if check is None:
        return None
    native: SinkVerifier | None = getattr(check, "native_verifier", None)
    return native if native is not None else _CheckFeed(check)


class RangeDownload:
    """One file fetched over ``connections`` connections into ``part`` (a PartFile).

    One connection continues a prefix part file (its length is the resume point, the caller owns
    its sidecar); several connections, a ramp or a kept sized part make it ``sized``: a part file
    of ``total`` bytes whose every range's progress the sidecar holds, under ``validator``.
    ``total`` None: the length is unknown (one open-ended range).
    ``ranges``: fixed ranges, each taken whole (an S3 object's parts); else pieces of the file.
    ``first``: a response already open for the first range (the conditional GET of one stream).
    Without a ramp all connections run from the start; with one, ``connections`` is the most the
    ramp may reach.
    """

    def __init__(
        self,
        request: DownloadRequest,
        part: PartFile,
        opener: RangeOpener,
        total: int | None,
        *,
        validator: str | None = None,
        connections: int = 1,
        ranges: tuple[Segment, ...] | None = None,
        first: httpx.Response | None = None,
        ramp: RampPolicy | None = None,
        min_split: int = MIN_SPLIT,
        window: int = REORDER_WINDOW,
    ) -> None:
        self._request = request
        self._part = part
        self._open = opener
        self.total = total
        self._validator = validator
        self._connections = connections
        self._first = first
        self._window = window
        resume = part.resume
        self.sized = connections > 1 or ramp is not None or bool(resume and resume.segments)
        if self.sized and (total is None or validator is None):
            raise SegmentsRefused("no length or validator to split the file by")
        self._offset = 0 if self.sized or resume is None else resume.offset
        self._ramp_policy = ramp
        self._ramp: ConnectionRamp | None = None
        self._running = connections if ramp is None else min(max(1, ramp.start), connections)
        self._whole_ranges = ranges is not None  # the given ranges are taken whole, never cut
        self.table = SegmentTable(self._segments(ranges), piece=self._piece(), min_split=min_split)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._wake = threading.Event()  # a connection asks the controller to look now
        self._ended: set[int] = set()  # the connections that have returned
        self._saved_at = time.monotonic()
        self._saved_bytes = 0
        self._final_url = request.url
        self._headers: httpx.Headers | None = None
        self._sink: PartSink | None = None

    def _segments(self, ranges: tuple[Segment, ...] | None) -> tuple[Segment, ...]:
        """The ranges to fetch: the sidecar's, the given ones, or the whole file (or its tail)."""
        resume, offset = self._part.resume, self._offset
        if self.sized and resume is not None and resume.segments:
            return resume.segments
        if ranges is not None:
            return tuple((max(s, offset), max(s, offset), e) for s, _, e in ranges if e > offset)
        return ((offset, offset, UNKNOWN_END if self.total is None else self.total),)

    @property
    def ramp(self) -> ConnectionRamp | None:
        """The ramp of the run (how many connections it reached, and why), None without one."""
        return self._ramp

    def _open_sink(self, check: ContentCheck | None) -> PartSink:
        """The part file's sink: sized, or a prefix (continued after the kept bytes)."""
        if self.sized:
            written = [(start, done) for start, done, _ in self.table.snapshot() if done > start]
        else:
            written = [(0, self._offset)] if self._offset else []
        deferred = self._part.landing.defers_checks  # the landing hashes and checks it all
        return self._part.open_sink(
            self.total if self.sized else None,
            written=written,
            verifier=None if deferred else sink_verifier(check),
            blake3=self._request.blake3 and not deferred,
            reserve=self.total,
            window=self._window,
        )

    def run(self, check: ContentCheck | None, progress: ProgressReporter) -> DownloadResult:
        """Fetch every range, hash in file order, move into place (or keep/discard the part)."""
        request, part, total = self._request, self._part, self.total
        if total is not None:
            request.check_limits(total)
        already = self._offset + sum(done - start for start, done, _ in self.table.snapshot())
        progress.start(request.name, total, already=already)
        self._progress = progress
        try:
            with part:
                sink = self._sink = self._open_sink(check)
                try:
                    if self.sized:
                        part.allow_resume(self._resume_point())
                    self._fetch_all()
                    if not self.table.complete():
                        raise IncompleteBodyError(request.url, "a range ended before its end")
                    self._sink = None  # finished: no more progress to save
                    digest = sink.finish(fsync=True)
                    summary = self._finish_check(check)
                except BaseException as exc:
                    self._save(force=True)
                    sink.abort()
                    if isinstance(exc, ValueError):  # the sink's content check
                        raise VerificationError(request.url, str(exc)) from exc
                    raise
                landed, rechecked = self._land(check, digest, sink)
        finally:
            self._first_close()
            progress.stop()
        return self._result(landed, sink, rechecked or summary)

    def _finish_check(self, check: ContentCheck | None) -> ContentSummary:
        """The content check's end (unless the landing checks the file itself)."""
        if check is None or self._part.landing.defers_checks:
            return ContentSummary()
        return check.finish()

    def _land(
        self, check: ContentCheck | None, digest: str, sink: PartSink
    ) -> tuple[LandedFile, ContentSummary | None]:
        """Check the SHA-256 asked for and land the file (or let the landing check it all)."""
        request, part = self._request, self._part
        file = LandedFile(request.final_path, sink.hashed(), digest, sink.blake3_hexdigest())
        if part.landing.defers_checks:
            return part.move_into_place(file, check=check, expect=request.check_sha256)
        request.check_sha256(digest)
        return part.move_into_place(file)

    def _result(self, file: LandedFile, sink: PartSink, summary: ContentSummary) -> DownloadResult:
        request = self._request
        headers = self._headers or httpx.Headers(  # every range was already on disk: the probe's
            {
                "ETag": request.expected_etag or "",
                "Last-Modified": request.expected_last_modified or "",
            }
        )
        ramp = self._ramp
        if self.sized:
            log.info("segmented download done",
                     extra={"source": request.name, "connections": self._running,
                            "connections_peak": self._connections if ramp is None else ramp.peak,
                            "ramp": None if ramp is None else ramp.reason,
                            "read_back": sink.read_back()})  # fmt: skip
        return DownloadResult(
            status="downloaded",
            final_url=self._final_url,
            etag=headers.get("ETag") or None,
            last_modified=headers.get("Last-Modified") or None,
            path=request.final_path,
            bytes=file.bytes,
            sha256=file.sha256,
            blake3=file.blake3,
            bytes_transferred=self.table.received,
            summary=summary,
        )

    def _resume_point(self) -> ResumePoint:
        """The sidecar of a sized part file: every range's progress."""
        assert self.total is not None
        assert self._validator is not None
        return ResumePoint(
            self._request.url, self._validator, self.total, segments=self.table.snapshot()
        )

    def _save(self, *, force: bool = False) -> None:
        """Record every range's progress in the sidecar (at most every SAVE_INTERVAL_S/BYTES).

        The progress is read first and the part file's data synced (fdatasync) before the sidecar
        is written: after a power loss it never claims bytes that did not reach the disk. Only the
        controller saves (connections wake it), so no receiving thread waits for the disk.
        """
        received = self.table.received
        due = (
            received - self._saved_bytes >= SAVE_BYTES
            or time.monotonic() - self._saved_at >= SAVE_INTERVAL_S
        )
        sink = self._sink
        if not (force or due) or not self.sized or sink is None:
            return
        self._saved_bytes = received
        self._saved_at = time.monotonic()
        if self._part.resumable:
            point = self._resume_point()
            sink.sync_data()
            self._part.allow_resume(point)

    def _piece(self) -> int:
        """The piece size for the connections running now (the whole file for given ranges)."""
        if self._whole_ranges or not self.sized or self.total is None:
            return UNKNOWN_END
        return piece_size(self.total, self._running, self._window)

    def _fetch_all(self) -> None:
        """Run the connections until no range is left; meanwhile save progress, steer the ramp."""
        threads: list[threading.Thread] = []
        if self._ramp_policy is not None:
            self._ramp = ConnectionRamp(self._ramp_policy, self._connections, time.monotonic())
        try:
            while True:
                while len(threads) < self._running:
                    index = len(threads)
                    thread = threading.Thread(
                        target=self._connection, args=(index,), name=f"range-{index}", daemon=True
                    )
                    threads.append(thread)
                    thread.start()
                if len(self._ended) == len(threads):
                    break
                self._wake.wait(self._pause())
                self._wake.clear()
                self._save()
                self._steer()
        except BaseException:
            self._stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            if self._ramp is not None:
                self._ramp.finish()
        for thread in threads:
            thread.join()  # each has returned from its work already
        if self._error is not None:
            raise self._error

    def _pause(self) -> float:
        """How long the controller waits: until the next save is due, less while ramping.

        A prefix part saves nothing: the controller only waits for its connection to end.
        """
        if not self.sized:
            return SAVE_INTERVAL_S
        due = max(0.0, self._saved_at + SAVE_INTERVAL_S - time.monotonic())
        ramp = self._ramp
        if ramp is None or ramp.settled:
            return due
        return min(due, ramp.tick_s)

    def _steer(self) -> None:
        """Let the ramp measure; run as many connections as it says (the surplus ends its piece)."""
        ramp = self._ramp
        if ramp is None or ramp.settled:
            return
        running = ramp.observe(time.monotonic(), self.table.received)
        if running != self._running:
            self._running = running
            self.table.set_piece(self._piece())
        if ramp.settled:
            log.info("connection ramp settled",
                     extra={"source": self._request.name, "connections": running,
                            "reason": ramp.reason, "steps": ramp.history()})  # fmt: skip

    def _connection(self, index: int) -> None:
        """One connection: take ranges and fetch them while it is among those that should run."""
        try:
            while (
                not self._stop.is_set()
                and index < self._running
                and (span := self.table.take()) is not None
            ):
                try:
                    self._fetch(span)
                finally:
                    self.table.release(span)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            self._stop.set()
        finally:
            self._ended.add(index)
            self._wake.set()  # the controller notices at once that a connection ended

    def _first_close(self) -> None:
        """Close the given first response if no connection used it."""
        first, self._first = self._first, None
        if first is not None:
            first.close()

    def _response_for(self, span: Range) -> AbstractContextManager[httpx.Response]:
        """The given first response for the range it answers, else a new ranged GET."""
        first = self._first
        if first is not None and span.claimed == span.start:
            self._first = None
            return nullcontext(first)
        end = None if span.end == UNKNOWN_END else span.end
        return self._open(span.claimed, end)

    def _fetch(self, span: Range) -> None:
        url = self._request.url
        first = span.claimed
        with httpx_errors_as_transfer_errors(url, "GET"), self._response_for(span) as response:
            try:
                self._accept(response, first, span.end)
                for chunk in response.iter_raw():
                    if self._stop.is_set() or not self._store(span, chunk):
                        return
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                total = "?" if span.end == UNKNOWN_END else span.end
                raise IncompleteBodyError(
                    url, f"connection lost after {span.written} of {total} bytes ({exc})"
                ) from exc
            finally:
                response.close()
        if span.end == UNKNOWN_END:
            self.table.end_at(span, span.written)
        elif span.written < span.end:
            raise IncompleteBodyError(
                url, f"body ended at byte {span.written} but {span.end} were announced"
            )

    def _accept(self, response: httpx.Response, first: int, end: int) -> None:
        """Go on only with the asked bytes of the same file: a 206 that fits, or the whole file."""
        url, total = self._request.url, self.total
        if response.status_code == httpx.codes.OK:
            if first == 0 and end in (UNKNOWN_END, total):
                self._note(response)
                return
            raise SegmentsRefused("the server answered a range with the whole file")
        if response.status_code != httpx.codes.PARTIAL_CONTENT:
            raise status_error(url, response, "GET")
        value = response.headers.get("Content-Range", "")
        try:
            got = parse_content_range(value, url)
        except ProtocolError as exc:
            raise SegmentsRefused(f"unusable Content-Range {value!r}") from exc
        if got.start != first or got.total != total:
            raise SegmentsRefused(f"Content-Range {value!r} does not fit byte {first}")
        self._note(response)

    def _note(self, response: httpx.Response) -> None:
        if self._headers is None:
            self._headers = response.headers
            self._final_url = str(response.url)

    def _store(self, span: Range, chunk: bytes) -> bool:
        """Hand the part of ``chunk`` that ``span`` still covers to the sink; False once done."""
        offset, count = self.table.claim(span, len(chunk))
        if count == 0:
            return False
        piece = chunk if count == len(chunk) else memoryview(chunk)[:count]
        assert self._sink is not None
        self._request.check_limits(offset + count)
        if not self._part.wait_room(offset + count, self._stop):
            return False
        self._sink.write(offset, piece)
        self.table.wrote(span, count)
        self._progress.advance(count)
        if self.table.received - self._saved_bytes >= SAVE_BYTES:
            self._wake.set()  # the controller saves the progress
        return count == len(chunk) and span.claimed < span.end
