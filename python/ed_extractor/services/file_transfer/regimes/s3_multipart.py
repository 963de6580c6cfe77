"""S3MultipartRegime: an ``s3://`` object fetched part by part (or range by range), verified.

Every request carries ``If-Match: <ETag>``: a 412 means the object was replaced, and the download
starts over with the new version. Over several connections the object's parts (``GET
?partNumber=N``; 8-64 MiB ranges of a single-part object) go through the segment engine into one
preallocated part file; over one, they stream in order through the sink. Either way SHA-256 and
the checks run in file order: the content check of what the probe sniffed, and the object's own
checksums (part MD5s against a multipart ETag, full-object CRCs). The sidecar holds the object's
ETag (and, segmented, every range's progress), so an interrupted download continues where its
bytes stop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import ClassVar, Final

import httpx

from ed_extractor.errors import IncompleteBodyError, ProtocolError, TransferError
from ed_extractor.hashing import FileSink
from ed_extractor.headers import parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.overlap import ChunkWorker
from ed_extractor.services.file_transfer.part_file import PartFile, PartFileStale
from ed_extractor.services.file_transfer.resume import ResumePoint, discard_part
from ed_extractor.services.file_transfer.segments import (
    AUTO_THRESHOLD,
    SegmentedDownload,
    SegmentsRefused,
    connections_per_file,
    ramp_policy,
)
from ed_extractor.services.file_transfer.transfer import drain, feed_prefix
from ed_extractor.services.s3.access import S3Access, s3_error
from ed_extractor.services.s3.checks import CombinedCheck, S3ObjectCheck
from ed_extractor.services.s3.probe import S3Object, S3Prober
from ed_extractor.vocabulary import Regime

log = logging.getLogger(__name__)

MIN_RANGE: Final = 8 << 20
MAX_RANGE: Final = 64 << 20
_RESTARTS: Final = 3  # new object versions met in one download before giving up

#: Opens the signed GET of the bytes ``[first, end)`` of one object version.
_Opener = Callable[[int, int], AbstractContextManager[httpx.Response]]


class ObjectChangedError(TransferError):
    """The object was replaced while it was being downloaded (a 412 to ``If-Match``)."""


def plan_segments(obj: S3Object, connections: int = 1) -> list[tuple[int, int]]:
    """The requests of a download, ``(start, length)``: the upload's parts, or 8-64 MiB ranges."""
    if obj.parts > 1:
        return obj.part_ranges()
    if obj.size == 0:
        return [(0, 0)]
    size = min(max(-(-obj.size // (4 * connections)), MIN_RANGE), MAX_RANGE)
    return [(start, min(size, obj.size - start)) for start in range(0, obj.size, size)]


def remaining_segments(obj: S3Object, offset: int) -> list[tuple[int, int]]:
    """The ``[first, end)`` still needed when the first ``offset`` bytes are on disk."""
    return [
        (max(start, offset), start + length)
        for start, length in plan_segments(obj)
        if start + length > offset or not length
    ]


class S3MultipartRegime:
    """Every ``s3://`` source: signed part GETs, in parallel if allowed, S3's checksums checked."""

    name: ClassVar[Regime] = "s3-multipart"

    def __init__(
        self,
        access: S3Access,
        content_check: Callable[[DownloadRequest], ContentCheck | None] | None = None,
    ) -> None:
        self._access = access
        self._content_check = content_check

    def download(
        self, client: httpx.Client, request: DownloadRequest, progress: ProgressReporter
    ) -> DownloadResult:
        """Fetch the object into place; start over (a few times) when it is replaced meanwhile."""
        prober = S3Prober(client, self._access)
        for _ in range(_RESTARTS):
            obj = prober.describe(request.url)
            try:
                return self._fetch(client, request, obj, progress)
            except ObjectChangedError as exc:
                log.warning("object replaced during the download; starting over",
                            extra={"source": request.name, "error": str(exc)})  # fmt: skip
                discard_part(request.final_path)
        raise TransferError(request.url, f"the object was replaced {_RESTARTS} times meanwhile")

    def _checks(self, request: DownloadRequest, obj: S3Object) -> ContentCheck:
        content = self._content_check(request) if self._content_check and request.verify else None
        return CombinedCheck([check for check in (content, S3ObjectCheck(obj)) if check])

    def _fetch(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        obj: S3Object,
        progress: ProgressReporter,
    ) -> DownloadResult:
        part = PartFile(request.final_path, request.url)
        resume = part.resume
        if resume is not None and (resume.validator, resume.total) != (obj.etag, obj.size):
            part.discard()  # written for another version of the object
        opener = partial(self._open, client, request.url, obj)
        connections = _connections(request, obj, part)
        if connections > 1 or (part.resume is not None and part.resume.segments):
            try:
                return self._segmented(client, request, obj, part, connections, opener, progress)
            except (SegmentsRefused, PartFileStale) as exc:
                log.info("segmented download refused; one connection from scratch",
                         extra={"source": request.name, "reason": str(exc)})  # fmt: skip
                part = PartFile(request.final_path, request.url)
                part.discard()
        return self._sequential(request, obj, part, opener, progress)

    def _segmented(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        obj: S3Object,
        part: PartFile,
        connections: int,
        opener: _Opener,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """The parts over ``connections`` connections through the segment engine."""
        ranges = tuple(
            (start, start, start + length) for start, length in plan_segments(obj, connections)
        )
        pinned = dataclasses.replace(request, expected_length=obj.size, expected_etag=obj.etag)
        ramp = ramp_policy(request.connections)
        engine = SegmentedDownload(
            client, pinned, part, connections, ranges=ranges, opener=opener, ramp=ramp
        )
        result = engine.run(self._checks(request, obj), progress)
        return dataclasses.replace(
            result, final_url=obj.http_url, etag=obj.etag, last_modified=obj.last_modified
        )

    def _sequential(
        self,
        request: DownloadRequest,
        obj: S3Object,
        part: PartFile,
        opener: _Opener,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """The parts one after the other, streamed in order through the sink."""
        offset = part.resume.offset if part.resume is not None else 0
        part.allow_resume(ResumePoint(request.url, obj.etag, obj.size))
        check = self._checks(request, obj)
        progress.start(request.name, obj.size, already=offset)
        received = 0
        try:
            with part:
                sink = part.open_sink(offset, blake3=request.blake3)
                checker = ChunkWorker(check.feed, name="check")
                try:
                    if offset:
                        feed_prefix(part.path, offset, checker)
                    for first, end in remaining_segments(obj, offset):
                        received += _segment(request, obj, opener, first, end, sink, checker,
                                             progress)  # fmt: skip
                    checker.close()
                    summary = check.finish()
                    digest = sink.finish(fsync=True)
                except BaseException:
                    checker.cancel()
                    sink.abort()
                    raise
                request.check_sha256(digest)
                part.move_into_place()
        finally:
            progress.stop()
        return DownloadResult(
            status="downloaded",
            final_url=obj.http_url,
            etag=obj.etag,
            last_modified=obj.last_modified,
            path=request.final_path,
            bytes=obj.size,
            sha256=digest,
            blake3=sink.blake3_hexdigest(),
            bytes_transferred=received,
            summary=summary,
        )

    @contextmanager
    def _open(
        self, client: httpx.Client, url: str, obj: S3Object, first: int, end: int
    ) -> Iterator[httpx.Response]:
        """The signed GET of ``[first, end)``: a whole part by ``partNumber``, else a Range."""
        headers = {"If-Match": obj.etag}
        query: dict[str, str | int] = {}
        number = obj.part_number(first, end)
        if number is not None:
            query["partNumber"] = number
        elif end > first:
            headers["Range"] = f"bytes={first}-{end - 1}"
        request = self._access.request(client, "GET", url, headers=headers, **query)
        response = self._access.send(client, request, stream=True)
        try:
            if response.status_code == httpx.codes.PRECONDITION_FAILED:
                raise ObjectChangedError(url, f"{obj.etag} is no longer the object's ETag")
            if response.status_code not in (200, 206):
                raise s3_error(url, response, "S3 GET", response.read())
            yield response
        finally:
            response.close()


def _connections(request: DownloadRequest, obj: S3Object, part: PartFile) -> int:
    """Connections for this object: the setting, bounded by its segments; 1 to go on a prefix."""
    resume = part.resume
    if resume is not None:
        return connections_per_file(request.connections) if resume.segments else 1
    if request.connections == "auto" and obj.size < AUTO_THRESHOLD:
        return 1
    wanted = connections_per_file(request.connections)
    return max(1, min(wanted, len(plan_segments(obj, wanted))))


def _segment(
    request: DownloadRequest,
    obj: S3Object,
    opener: _Opener,
    first: int,
    end: int,
    sink: FileSink,
    checker: ChunkWorker,
    progress: ProgressReporter,
) -> int:
    """GET ``[first, end)`` into the sink and the checks; return its size.

    The segment's writer is drained before returning, so that the part file holds every byte
    received (the next attempt asks for less).
    """
    url, length = request.url, end - first
    writer = ChunkWorker(sink.write, name="sink")
    received = 0
    try:
        with httpx_errors_as_transfer_errors(url, "S3 GET"), opener(first, end) as response:
            _check_range(url, response, first, length, obj.size)
            try:
                for chunk in response.iter_raw():
                    received += len(chunk)
                    if received > length:
                        raise IncompleteBodyError(url, f"segment at {first} exceeds {length} bytes")
                    request.check_limits(first + received)
                    writer.put(chunk)
                    checker.put(chunk)
                    progress.advance(len(chunk))
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise IncompleteBodyError(
                    url, f"connection lost after {received} of {length} bytes at {first} ({exc})"
                ) from exc
        writer.close()
    except BaseException:
        drain(writer)
        raise
    if received != length:
        raise IncompleteBodyError(url, f"segment at {first} ended after {received} of {length}")
    return received


def _check_range(url: str, response: httpx.Response, start: int, length: int, total: int) -> None:
    """A 206 must carry exactly the asked segment; a 200 only the whole object."""
    value = response.headers.get("Content-Range")
    if response.status_code == 200:
        if start == 0 and length == total:
            return
        raise ProtocolError(url, f"asked for {length} bytes at {start}, got the whole object")
    if value is None:
        raise ProtocolError(url, "206 Partial Content without a Content-Range header")
    got = parse_content_range(value, url)
    if got.start != start or got.total != total or got.end != start + length - 1:
        raise ProtocolError(
            url, f"asked for {length} bytes at {start}, got Content-Range {value!r}"
        )
