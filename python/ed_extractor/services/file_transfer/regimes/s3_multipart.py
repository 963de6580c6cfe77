"""S3MultipartRegime: an ``s3://`` object fetched part by part (or range by range), verified.

Every request carries ``If-Match: <ETag>``: a 412 means the object was replaced, and the download
starts over with the new version. The bytes stream into the part file in file order through the
sink (SHA-256) and the checks: the content check of what the probe sniffed, and the object's own
checksums (part MD5s against a multipart ETag, full-object CRCs). The sidecar records the object
version (its ETag), so an interrupted download continues where its bytes stop: the rest of that
part by ``Range``, the following parts by ``partNumber``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

import httpx

from ed_extractor.errors import (
    IncompleteBodyError,
    ProtocolError,
    TransferError,
    VerificationError,
)
from ed_extractor.hashing import FileSink
from ed_extractor.headers import parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors
from ed_extractor.manifest.models import Regime
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.overlap import ChunkWorker
from ed_extractor.services.file_transfer.part_file import PartFile
from ed_extractor.services.file_transfer.resume import ResumePoint, discard_part
from ed_extractor.services.file_transfer.transfer import _drain, _feed_prefix
from ed_extractor.services.s3.access import S3Access, s3_error
from ed_extractor.services.s3.checks import CombinedCheck, S3ObjectCheck
from ed_extractor.services.s3.probe import S3Object, S3Prober

log = logging.getLogger(__name__)

MIN_RANGE: Final = 8 << 20
MAX_RANGE: Final = 64 << 20
_RESTARTS: Final = 3  # new object versions met in one download before giving up


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


class S3MultipartRegime:
    """Every ``s3://`` source: signed segment GETs, positional order, S3's checksums verified."""

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
        offset = part.resume.offset if part.resume is not None else 0
        part.allow_resume(ResumePoint(request.url, obj.etag, obj.size))
        check = self._checks(request, obj)
        progress.start(request.name, obj.size, already=offset)
        received = 0
        try:
            with part:
                sink = part.open_sink(offset)
                checker = ChunkWorker(check.feed, name="check")
                try:
                    if offset:
                        _feed_prefix(part.path, offset, checker)
                    for segment in remaining_segments(obj, offset):
                        received += self._segment(client, request, obj, segment, sink, checker,
                                                  progress)  # fmt: skip
                    checker.close()
                    summary = check.finish()
                    digest = sink.finish(fsync=True)
                except BaseException:
                    checker.cancel()
                    sink.abort()
                    raise
                if request.expect_sha256 is not None and digest != request.expect_sha256.lower():
                    raise VerificationError(
                        request.url,
                        f"SHA-256 mismatch: expected {request.expect_sha256}, got {digest}",
                    )
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
            bytes_transferred=received,
            summary=summary,
        )

    def _segment(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        obj: S3Object,
        segment: Segment,
        sink: FileSink,
        checker: ChunkWorker,
        progress: ProgressReporter,
    ) -> int:
        """GET one segment (If-Match the version) into the sink and the checks; return its size.

        The segment's writer is drained before returning, so that the part file holds every
        byte received (the next attempt asks for less).
        """
        url = request.url
        headers = {"If-Match": obj.etag}
        query: dict[str, str | int] = {}
        if segment.part is not None:
            query["partNumber"] = segment.part
        elif segment.length:
            headers["Range"] = f"bytes={segment.start}-{segment.start + segment.length - 1}"
        http_request = self._access.request(client, "GET", url, headers=headers, **query)
        writer = ChunkWorker(sink.write, name="sink")
        try:
            with httpx_errors_as_transfer_errors(url, "S3 GET"):
                response = self._access.send(client, http_request, stream=True)
                try:
                    _accept(url, response, obj, segment)
                    received = _receive(request, response, segment, writer, checker, progress)
                finally:
                    response.close()
            writer.close()
        except BaseException:
            _drain(writer)
            raise
        return received


@dataclass(frozen=True)
class Segment:
    """One request of a download: ``length`` bytes at ``start``, or the upload's part ``part``."""

    start: int
    length: int
    part: int | None = None


def remaining_segments(obj: S3Object, offset: int) -> list[Segment]:
    """The requests still needed when the first ``offset`` bytes are on disk.

    Whole parts go by ``partNumber``; the rest of a part begun earlier goes by ``Range``.
    """
    segments = []
    for number, (start, length) in enumerate(plan_segments(obj), start=1):
        end = start + length
        if end <= offset and length:
            continue
        if start >= offset and obj.parts > 1:
            segments.append(Segment(start, length, number))
        else:
            first = max(start, offset)
            segments.append(Segment(first, end - first))
    return segments


def _accept(url: str, response: httpx.Response, obj: S3Object, segment: Segment) -> None:
    """Go on only with exactly the asked bytes of the same object version."""
    if response.status_code == httpx.codes.PRECONDITION_FAILED:
        raise ObjectChangedError(url, f"{obj.etag} is no longer the object's ETag")
    if response.status_code not in (200, 206):
        raise s3_error(url, response, "S3 GET", response.read())
    _check_range(url, response, segment.start, segment.length, obj.size)


def _receive(
    request: DownloadRequest,
    response: httpx.Response,
    segment: Segment,
    writer: ChunkWorker,
    checker: ChunkWorker,
    progress: ProgressReporter,
) -> int:
    """Hand the segment's body to the writer and the checker; return its size."""
    url, start, length = request.url, segment.start, segment.length
    received = 0
    try:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > length:
                raise IncompleteBodyError(url, f"segment at {start} exceeds {length} bytes")
            request.check_limits(start + received)
            writer.put(chunk)
            checker.put(chunk)
            progress.advance(len(chunk))
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise IncompleteBodyError(
            url, f"connection lost after {received} of {length} bytes at {start} ({exc})"
        ) from exc
    if received != length:
        raise IncompleteBodyError(url, f"segment at {start} ended after {received} of {length}")
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
