"""Segmented download: several ranged GETs into one preallocated part file, hashed in file order.

Each connection (a thread; the shared httpx client is thread-safe) takes the next piece from the
front of what nobody fetches yet (window / connections bytes), GETs it with ``If-Range`` and
writes it at its offset through a ``PartWriter`` (``pwrite``, no GIL); when nothing is left to
take, it takes over half of the largest range still in flight (work stealing). Since the
connections work side by side near the front, one thread can run SHA-256 and the content check
over the file in order as its contiguous prefix grows, from the chunks held in a bounded window;
a chunk beyond it is read back from the part file (page cache) when its turn comes. The sidecar
records every range's progress at a bounded interval, after an fdatasync of the part file, so a
killed run (or one cut by a power loss) continues each range where its bytes stopped. With a
``RampPolicy`` (``--connections auto``) the download starts with few connections and the
controller loop adds more while they raise the measured throughput.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final

import httpx

from ed_extractor.errors import IncompleteBodyError, ProtocolError
from ed_extractor.hashing import Blake3
from ed_extractor.headers import if_range_validator, parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.services.file_transfer.base import (
    Connections,
    ContentCheck,
    ContentSummary,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.part_file import PartFile
from ed_extractor.services.file_transfer.ramp import ConnectionRamp, RampPolicy
from ed_extractor.services.file_transfer.resume import ResumePoint, Segment
from ed_extractor.services.file_transfer.segment_table import (
    SHARED_REORDER_WINDOW,
    FileOrderDigest,
    Range,
    ReorderBudget,
    SegmentTable,
)

log = logging.getLogger(__name__)

AUTO_CONNECTIONS: Final = 8
AUTO_THRESHOLD: Final = 64 << 20  # auto uses several connections from this size on
MIN_SPLIT: Final = 4 << 20  # a range is split for an idle connection only if both halves reach it
MAX_PIECE: Final = 16 << 20  # connections take the file from the front in pieces of at most
# window / connections (and file / connections), at least MIN_SEGMENT
MIN_SEGMENT: Final = 256 << 10  # no piece is smaller (an explicit N is lowered to fit)
SAVE_INTERVAL_S: Final = 0.25  # the sidecar records progress this often...
SAVE_BYTES: Final = 4 << 20  # ...or after this many new bytes, whichever comes first


#: Opens the GET of the bytes ``[first, end)`` of the file: a context manager of the streamed
#: response (the default sends ``Range`` with ``If-Range``; S3 signs and sends ``If-Match``).
RangeOpener = Callable[[int, int], AbstractContextManager[httpx.Response]]


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
    """How many connections ``request`` may use (1: the single-stream path); auto ramps up to it."""
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


class SegmentedDownload:
    """One file fetched over several connections into ``part`` (a PartFile).

    Without a ramp all ``connections`` run from the start; with one, ``connections`` is the most
    the ramp may reach.
    """

    def __init__(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        part: PartFile,
        connections: int,
        *,
        min_split: int = MIN_SPLIT,
        window: ReorderBudget = SHARED_REORDER_WINDOW,
        ranges: tuple[Segment, ...] | None = None,
        opener: RangeOpener | None = None,
        ramp: RampPolicy | None = None,
    ) -> None:
        """Hooks: ``ranges`` (each taken whole) for pieces, ``opener`` for the ranged GET.

        ``ramp``: start with its ``start`` connections and add more while they pay.
        """
        self._client = client
        self._request = request
        self._part = part
        self._connections = connections
        self._open = opener or self._open_range
        resume = part.resume
        validator = if_range_validator(request.expected_etag, request.expected_last_modified)
        if resume is not None and resume.segments:
            if validator not in (None, resume.validator):  # the probe already saw another file
                part.discard()
                raise SegmentsRefused("the file changed since the part file was written")
            self.point = resume
            segments = resume.segments
        else:
            total = request.expected_length
            if total is None or validator is None:
                raise SegmentsRefused("no length or validator to split the file by")
            self.point = ResumePoint(request.url, validator, total)
            segments = ((0, 0, total),) if ranges is None else ranges
        self._window = window
        self._ramp_policy = ramp
        self._ramp: ConnectionRamp | None = None
        self._running = connections if ramp is None else min(max(1, ramp.start), connections)
        self._whole_ranges = ranges is not None  # the given ranges are taken whole, never cut
        piece = self._piece()
        self.table = SegmentTable(segments, piece=piece, min_split=min_split)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._wake = threading.Event()  # a connection asks the controller to look now
        self._ended: set[int] = set()  # the connections that have returned
        self._saved_at = time.monotonic()
        self._saved_bytes = 0
        self._final_url = request.url
        self._headers: httpx.Headers | None = None

    @property
    def ramp(self) -> ConnectionRamp | None:
        """The ramp of the run (how many connections it reached, and why), None without one."""
        return self._ramp

    def run(self, check: ContentCheck | None, progress: ProgressReporter) -> DownloadResult:
        """Fetch every range, hash in file order, move into place (or keep/discard the part)."""
        request, part, total = self._request, self._part, self.point.total
        request.check_limits(total)
        writer = part.open_writer(total)
        already = sum(written - start for start, written, _ in self.table.snapshot())
        progress.start(request.name, total, already=already)
        self._progress = progress
        self._writer = writer
        try:
            with part:
                part.allow_resume(self._point())
                blake3 = Blake3() if request.blake3 else None
                digest_worker = FileOrderDigest(
                    writer,
                    self.table,
                    total,
                    check.feed if check is not None else None,
                    window=self._window,
                    also=() if blake3 is None else (blake3,),
                )
                self._digest = digest_worker
                try:
                    self._fetch_all()
                    if not self.table.complete():
                        raise IncompleteBodyError(request.url, "a range ended before its end")
                    digest = digest_worker.finish()
                except BaseException:
                    digest_worker.stop()
                    raise
                finally:
                    self._save(force=True)
                summary = check.finish() if check is not None else ContentSummary()
                writer.sync()
                writer.close()
                request.check_sha256(digest)
                part.move_into_place()
        finally:
            writer.close()
            progress.stop()
        headers = self._headers or httpx.Headers(  # every range was already on disk: the probe's
            {
                "ETag": request.expected_etag or "",
                "Last-Modified": request.expected_last_modified or "",
            }
        )
        ramp = self._ramp
        log.info("segmented download done",
                 extra={"source": request.name, "connections": self._running,
                        "connections_peak": self._connections if ramp is None else ramp.peak,
                        "ramp": None if ramp is None else ramp.reason,
                        "read_back": digest_worker.read_back})  # fmt: skip
        return DownloadResult(
            status="downloaded",
            final_url=self._final_url,
            etag=headers.get("ETag") or None,
            last_modified=headers.get("Last-Modified") or None,
            path=request.final_path,
            bytes=total,
            sha256=digest,
            blake3=None if blake3 is None else blake3.hexdigest(),
            bytes_transferred=self.table.received,
            summary=summary,
        )

    def _point(self) -> ResumePoint:
        return ResumePoint(
            self.point.url, self.point.validator, self.point.total, segments=self.table.snapshot()
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
        if not (force or due):
            return
        self._saved_bytes = received
        self._saved_at = time.monotonic()
        if self._part.resumable:
            point = self._point()
            self._writer.sync_data()
            self._part.allow_resume(point)

    def _piece(self) -> int:
        """The piece size for the connections running now (the whole file for given ranges)."""
        if self._whole_ranges:
            return self.point.total
        return piece_size(self.point.total, self._running, self._window.limit)

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
        """How long the controller waits: until the next save is due, less while ramping."""
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

    def _open_range(self, first: int, end: int) -> AbstractContextManager[httpx.Response]:
        """The default opener: ``Range`` with ``If-Range`` on the shared client."""
        headers = {
            "Accept-Encoding": "identity",
            "Range": f"bytes={first}-{end - 1}",
            "If-Range": self.point.validator,
        }
        return self._client.stream("GET", self._request.url, headers=headers)

    def _fetch(self, span: Range) -> None:
        url = self._request.url
        first = span.claimed
        with (
            httpx_errors_as_transfer_errors(url, "GET range"),
            self._open(first, span.end) as response,
        ):
            self._accept(response, first)
            try:
                for chunk in response.iter_raw():
                    if self._stop.is_set() or not self._store(span, chunk):
                        return
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise IncompleteBodyError(
                    url, f"connection lost at byte {span.written} of range {span.start}- ({exc})"
                ) from exc
        if span.written < span.end:
            raise IncompleteBodyError(url, f"range ended at byte {span.written} of {span.end}")

    def _accept(self, response: httpx.Response, first: int) -> None:
        """Go on only with a 206 of exactly the asked bytes of the same file."""
        url = self._request.url
        if response.status_code == httpx.codes.OK:
            raise SegmentsRefused("the server answered a range with the whole file")
        if response.status_code != httpx.codes.PARTIAL_CONTENT:
            raise status_error(url, response, "GET range")
        value = response.headers.get("Content-Range", "")
        try:
            got = parse_content_range(value, url)
        except ProtocolError as exc:
            raise SegmentsRefused(f"unusable Content-Range {value!r}") from exc
        if got.start != first or got.total != self.point.total:
            raise SegmentsRefused(f"Content-Range {value!r} does not fit byte {first}")
        if self._headers is None:
            self._headers = response.headers
            self._final_url = str(response.url)

    def _store(self, span: Range, chunk: bytes) -> bool:
        """Write the part of ``chunk`` that ``span`` still covers; False once it is complete."""
        if self._digest.error is not None:  # the content check failed: no use fetching on
            raise self._digest.error
        offset, count = self.table.claim(span, len(chunk))
        if count == 0:
            return False
        piece = chunk if count == len(chunk) else memoryview(chunk)[:count]
        self._digest.offer(offset, piece)
        self._writer.pwrite(piece, offset)
        self.table.wrote(span, count)
        self._digest.advanced()
        self._request.check_limits(self.table.received)
        self._progress.advance(count)
        if self.table.received - self._saved_bytes >= SAVE_BYTES:
            self._wake.set()  # the controller saves the progress
        return count == len(chunk) and span.claimed < span.end
