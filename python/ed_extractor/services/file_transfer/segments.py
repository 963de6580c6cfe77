"""Segmented download: several ranged GETs into one preallocated part file, hashed in file order.

Each connection (a thread; the shared httpx client is thread-safe) fetches one range of the file
with ``If-Range`` and writes it at its offset through a ``PartWriter`` (``pwrite``, no GIL). A
connection that finishes takes over half of the largest range still being fetched. One thread
runs SHA-256 and the content check over the file in order as its contiguous prefix grows: from
the chunks the connections hand over while they fit in a bounded window, else read back from
the part file (page cache). The sidecar records every range's progress at a bounded interval, so
a killed run continues each range where its bytes stopped.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final

import httpx

from ed_extractor.errors import IncompleteBodyError, ProtocolError, VerificationError
from ed_extractor.hashing import PartWriter, Sha256
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
from ed_extractor.services.file_transfer.overlap import ChunkWorker
from ed_extractor.services.file_transfer.part_file import PartFile, PartFileStale
from ed_extractor.services.file_transfer.resume import ResumePoint, Segment

log = logging.getLogger(__name__)

AUTO_CONNECTIONS: Final = 8
AUTO_THRESHOLD: Final = 64 << 20  # auto uses several connections from this size on
MIN_SPLIT: Final = 4 << 20  # a range is split for an idle connection only if both halves reach it
MIN_SEGMENT: Final = 256 << 10  # an explicit N never makes ranges smaller than this
REORDER_WINDOW: Final = 32 << 20  # chunks held in memory for the in-order hash, at most
READ_BACK: Final = 1 << 20  # bytes read back from the part file per step beyond the window
SAVE_INTERVAL_S: Final = 0.5  # the sidecar is rewritten at most this often...
SAVE_BYTES: Final = 8 << 20  # ...or after this many new bytes, whichever comes first


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


def connection_count(request: DownloadRequest, resume: ResumePoint | None) -> int:
    """How many connections to use for ``request`` (1: the single-stream path)."""
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


@dataclass
class _Range:
    """One range ``[start, end)`` of the part file, claimed and written up to a point."""

    start: int
    written: int
    end: int
    claimed: int
    busy: bool = False


class SegmentTable:
    """The ranges of one part file: who fetches what, what is written; thread-safe."""

    def __init__(self, segments: tuple[Segment, ...], min_split: int) -> None:
        self._lock = threading.Lock()
        self._min_split = min_split
        self._ranges = [_Range(start, written, end, written) for start, written, end in segments]
        self._starts = [r.start for r in self._ranges]
        self.received = 0  # bytes written by this run's connections

    @classmethod
    def split_evenly(cls, total: int, count: int, min_split: int) -> SegmentTable:
        """``count`` ranges of (nearly) equal size over ``total`` bytes."""
        bounds = [total * i // count for i in range(count + 1)]
        return cls(tuple((a, a, b) for a, b in itertools.pairwise(bounds)), min_split)

    def take(self) -> _Range | None:
        """A range for an idle connection: an unfetched one, else half of the largest in flight."""
        with self._lock:
            for candidate in self._ranges:
                if not candidate.busy and candidate.claimed < candidate.end:
                    candidate.busy = True
                    return candidate
            busy = [r for r in self._ranges if r.busy and r.end - r.claimed >= 2 * self._min_split]
            if not busy:
                return None
            victim = max(busy, key=lambda r: r.end - r.claimed)
            middle = victim.claimed + (victim.end - victim.claimed) // 2
            stolen = _Range(middle, middle, victim.end, middle, busy=True)
            victim.end = middle
            index = bisect.bisect(self._starts, middle)
            self._ranges.insert(index, stolen)
            self._starts.insert(index, middle)
            return stolen

    def claim(self, span: _Range, length: int) -> tuple[int, int]:
        """Reserve up to ``length`` bytes after ``span``'s claimed ones: ``(offset, count)``."""
        with self._lock:
            offset = span.claimed
            count = max(0, min(length, span.end - offset))
            span.claimed += count
            return offset, count

    def wrote(self, span: _Range, count: int) -> None:
        """``count`` claimed bytes of ``span`` are on disk."""
        with self._lock:
            span.written += count
            self.received += count

    def release(self, span: _Range) -> None:
        """``span``'s connection stopped; another may take over what it left."""
        with self._lock:
            span.busy = False
            span.claimed = span.written

    def complete(self) -> bool:
        """True when every byte of the file is written."""
        with self._lock:
            return all(r.written == r.end for r in self._ranges)

    def written_after(self, offset: int) -> int:
        """The end of the bytes written contiguously from ``offset`` inside its range."""
        with self._lock:
            index = bisect.bisect(self._starts, offset) - 1
            span = self._ranges[index]
            return max(offset, span.written) if offset < span.end else offset

    def snapshot(self) -> tuple[Segment, ...]:
        """Every range as ``(start, written, end)``, for the sidecar."""
        with self._lock:
            return tuple((r.start, r.written, r.end) for r in self._ranges)


class FileOrderDigest:
    """SHA-256 and the content check over the part file in file order, on a thread of its own.

    Connections ``offer`` each chunk they wrote; one that lies at the hashed frontier, or fits in
    the reorder window, is kept until the frontier reaches it; any other is read back from the
    part file when its turn comes.
    """

    def __init__(
        self,
        writer: PartWriter,
        table: SegmentTable,
        total: int,
        check: Callable[[bytes], object] | None,
        window: int = REORDER_WINDOW,
    ) -> None:
        self._writer = writer
        self._table = table
        self._total = total
        self._window = window
        self._hash = Sha256()
        self._checker = ChunkWorker(check, name="check") if check is not None else None
        self._pending: dict[int, bytes | memoryview] = {}
        self._pending_bytes = 0
        self._done = 0
        self._stopped = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self.read_back = 0  # bytes read back from the part file (beyond the window)
        self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
        self._thread.start()

    def offer(self, offset: int, chunk: bytes | memoryview) -> None:
        """``chunk`` will be written at ``offset``: keep it for the hash if it fits the window."""
        with self._changed:
            if offset == self._done or (
                offset > self._done and self._pending_bytes + len(chunk) <= self._window
            ):
                self._pending[offset] = chunk
                self._pending_bytes += len(chunk)

    def advanced(self) -> None:
        """Bytes were written: wake the hashing thread."""
        with self._changed:
            self._changed.notify()

    def _next(self) -> tuple[bytes | memoryview | None, int] | None:
        """The next piece in file order: a kept chunk, or a span to read back; None: stop."""
        with self._changed:
            while not self._stopped and self._done < self._total:
                chunk = self._pending.pop(self._done, None)
                if chunk is not None:
                    self._pending_bytes -= len(chunk)
                    return chunk, len(chunk)
                available = self._table.written_after(self._done) - self._done
                if available > 0:
                    later = [o for o in self._pending if o > self._done]
                    limit = min(later, default=self._total) - self._done
                    return None, min(available, READ_BACK, limit)
                self._changed.wait(0.5)
            return None

    def _run(self) -> None:
        try:
            while (piece := self._next()) is not None:
                chunk, length = piece
                if chunk is None:
                    chunk = self._writer.pread(self._done, length)
                    self.read_back += length
                self._hash.update(chunk)
                if self._checker is not None:
                    self._checker.put(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
                with self._changed:
                    self._done += length
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def stop(self) -> None:
        """Stop hashing (a failed download); never raises."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join()
        if self._checker is not None:
            self._checker.cancel()

    def finish(self) -> str:
        """Wait until the whole file is hashed and checked; return its SHA-256 hex."""
        self._thread.join()
        if self._error is not None:
            if self._checker is not None:
                self._checker.cancel()
            raise self._error
        if self._checker is not None:
            self._checker.close()
        if self._done != self._total:
            raise RuntimeError(f"hashed {self._done} of {self._total} bytes")
        return self._hash.hexdigest()


class SegmentedDownload:
    """One file fetched over several connections into ``part`` (a PartFile)."""

    def __init__(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        part: PartFile,
        connections: int,
        *,
        min_split: int = MIN_SPLIT,
        ranges: tuple[Segment, ...] | None = None,
        opener: RangeOpener | None = None,
    ) -> None:
        """``ranges`` replaces the even split of a fresh download; ``opener`` the default GET."""
        self._client = client
        self._request = request
        self._part = part
        self._connections = connections
        self._open = opener or self._open_range
        resume = part.resume
        if resume is not None and resume.segments:
            self.point = resume
            self.table = SegmentTable(resume.segments, min_split)
        else:
            total = request.expected_length
            validator = if_range_validator(request.expected_etag, request.expected_last_modified)
            if total is None or validator is None:
                raise SegmentsRefused("no length or validator to split the file by")
            self.point = ResumePoint(request.url, validator, total)
            self.table = (
                SegmentTable(ranges, min_split)
                if ranges is not None
                else SegmentTable.split_evenly(total, connections, min_split)
            )
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._save_lock = threading.Lock()
        self._saved_at = time.monotonic()
        self._saved_bytes = 0
        self._final_url = request.url
        self._headers: httpx.Headers | None = None

    def run(self, check: ContentCheck | None, progress: ProgressReporter) -> DownloadResult:
        """Fetch every range, hash in file order, move into place (or keep/discard the part)."""
        request, part, total = self._request, self._part, self.point.total
        request.check_limits(total)
        keep = part.resume is not None
        try:
            writer = PartWriter(part.path, total, keep=keep)
        except ValueError as exc:  # the part file is not the size its sidecar says
            part.discard()
            raise PartFileStale(str(exc)) from exc
        already = sum(written - start for start, written, _ in self.table.snapshot())
        progress.start(request.name, total, already=already)
        self._progress = progress
        self._writer = writer
        try:
            with part:
                part.allow_resume(self._point())
                digest_worker = FileOrderDigest(
                    writer, self.table, total, check.feed if check is not None else None
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
                if request.expect_sha256 is not None and digest != request.expect_sha256.lower():
                    raise VerificationError(
                        request.url,
                        f"SHA-256 mismatch: expected {request.expect_sha256}, got {digest}",
                    )
                part.move_into_place()
        finally:
            writer.close()
            progress.stop()
        headers = self._headers or httpx.Headers()
        log.info("segmented download done",
                 extra={"source": request.name, "connections": self._connections,
                        "read_back": digest_worker.read_back})  # fmt: skip
        return DownloadResult(
            status="downloaded",
            final_url=self._final_url,
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            path=request.final_path,
            bytes=total,
            sha256=digest,
            bytes_transferred=self.table.received,
            summary=summary,
        )

    def _point(self) -> ResumePoint:
        return ResumePoint(
            self.point.url, self.point.validator, self.point.total, segments=self.table.snapshot()
        )

    def _save(self, *, force: bool = False) -> None:
        """Record every range's progress in the sidecar (at most every SAVE_INTERVAL_S/BYTES)."""
        received = self.table.received
        due = (
            received - self._saved_bytes >= SAVE_BYTES
            or time.monotonic() - self._saved_at >= SAVE_INTERVAL_S
        )
        if not (force or due) or not self._save_lock.acquire(blocking=force):
            return
        try:
            self._saved_bytes = received
            self._saved_at = time.monotonic()
            if self._part.resumable:
                self._part.allow_resume(self._point())
        finally:
            self._save_lock.release()

    def _fetch_all(self) -> None:
        threads = [
            threading.Thread(target=self._connection, name=f"range-{i}", daemon=True)
            for i in range(self._connections)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(SAVE_INTERVAL_S)
                    self._save()
        except BaseException:
            self._stop.set()
            for thread in threads:
                thread.join()
            raise
        if self._error is not None:
            raise self._error

    def _connection(self) -> None:
        try:
            while not self._stop.is_set() and (span := self.table.take()) is not None:
                try:
                    self._fetch(span)
                finally:
                    self.table.release(span)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            self._stop.set()

    def _open_range(self, first: int, end: int) -> AbstractContextManager[httpx.Response]:
        """The default opener: ``Range`` with ``If-Range`` on the shared client."""
        headers = {
            "Accept-Encoding": "identity",
            "Range": f"bytes={first}-{end - 1}",
            "If-Range": self.point.validator,
        }
        return self._client.stream("GET", self._request.url, headers=headers)

    def _fetch(self, span: _Range) -> None:
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

    def _store(self, span: _Range, chunk: bytes) -> bool:
        """Write the part of ``chunk`` that ``span`` still covers; False once it is complete."""
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
        self._save()
        return count == len(chunk) and span.claimed < span.end
