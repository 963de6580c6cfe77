"""The streaming core of every regime: a conditional, resumable GET into a FileSink, then rename."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Final

import httpx

from ed_extractor.errors import IncompleteBodyError, ProtocolError, VerificationError
from ed_extractor.hashing import BACKEND
from ed_extractor.headers import (
    accepts_byte_ranges,
    if_range_validator,
    parse_content_length,
    parse_content_range,
)
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.overlap import ChunkFeed, ChunkWorker, InlineFeed
from ed_extractor.services.file_transfer.part_file import PartFile, PartFileStale
from ed_extractor.services.file_transfer.resume import ResumePoint
from ed_extractor.services.file_transfer.segments import (
    SegmentedDownload,
    SegmentsRefused,
    connection_count,
    ramp_policy,
)

log = logging.getLogger(__name__)

_PREFIX_READ: Final = 1 << 20


def transfer(
    client: httpx.Client,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
) -> DownloadResult:
    """GET ``request.url`` and store the raw body atomically at ``request.final_path``.

    A kept part file is continued with ``Range``/``If-Range``; without one the GET is conditional
    on the recorded validators (304: unchanged). A part file that turns out not to fit is
    discarded once the response is closed, and the download starts over.
    """
    part = PartFile(request.final_path, request.url)
    connections = connection_count(request, part.resume)
    if connections > 1 or (part.resume is not None and part.resume.segments):
        try:
            ramp = ramp_policy(request.connections)
            engine = SegmentedDownload(client, request, part, connections, ramp=ramp)
            return engine.run(check, progress)
        except (SegmentsRefused, PartFileStale) as exc:
            log.info("segmented download refused; one connection from scratch",
                     extra={"source": request.name, "reason": str(exc)})  # fmt: skip
            part = PartFile(request.final_path, request.url)
    try:
        return _attempt(client, request, check, progress, part)
    except PartFileStale:
        return _attempt(client, request, check, progress, PartFile(request.final_path, request.url))


def _attempt(
    client: httpx.Client,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
    part: PartFile,
) -> DownloadResult:
    resume = part.resume
    headers: dict[str, str] = {}
    if resume is not None:
        headers["Range"] = f"bytes={resume.offset}-"
        headers["If-Range"] = resume.validator
    else:
        if request.if_none_match:
            headers["If-None-Match"] = request.if_none_match
        if request.if_modified_since:
            headers["If-Modified-Since"] = request.if_modified_since
    with (
        httpx_errors_as_transfer_errors(request.url, "GET"),
        client.stream("GET", request.url, headers=headers) as response,
    ):
        status = response.status_code
        if status == httpx.codes.NOT_MODIFIED and resume is None:
            return DownloadResult(
                status="unchanged",
                final_url=str(response.url),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
        if status == httpx.codes.PARTIAL_CONTENT and resume is not None:
            if not _continues(response, resume):
                part.discard()
                raise PartFileStale("206 does not continue the part file")
            return _store_body(response, request, check, progress, part)
        if status == httpx.codes.OK:
            if resume is not None:
                log.info("server sent the whole file instead of the rest; starting over",
                         extra={"source": request.name})  # fmt: skip
                part.discard()
            return _store_body(response, request, check, progress, part)
        raise status_error(request.url, response, "GET")


def _continues(response: httpx.Response, resume: ResumePoint) -> bool:
    """True when a 206 is exactly the missing tail of the kept part file."""
    value = response.headers.get("Content-Range", "")
    try:
        content_range = parse_content_range(value, str(response.request.url))
    except ProtocolError:
        content_range = None
    if (
        content_range is None
        or content_range.start != resume.offset
        or content_range.total != resume.total
    ):
        log.warning("206 does not continue the part file; starting over",
                    extra={"content_range": value, "offset": resume.offset})  # fmt: skip
        return False
    return True


def _resume_point_for(response: httpx.Response, url: str, length: int | None) -> ResumePoint | None:
    """Where this 200 could be continued from later, if the server allows it (ranges, validator)."""
    if length is None or not accepts_byte_ranges(response.headers.get("Accept-Ranges")):
        return None
    validator = if_range_validator(
        response.headers.get("ETag"), response.headers.get("Last-Modified")
    )
    return None if validator is None else ResumePoint(url, validator, length)


def _check_announced_length(
    response: httpx.Response, request: DownloadRequest, length: int | None
) -> None:
    """A Content-Length that contradicts the probe's length for the same ETag is a lie."""
    etag = response.headers.get("ETag")
    if (
        length is not None
        and request.expected_length is not None
        and etag is not None
        and etag == request.expected_etag
        and length != request.expected_length
    ):
        raise ProtocolError(
            request.url,
            f"Content-Length {length} contradicts the probed length {request.expected_length} "
            f"of the same ETag {etag}",
        )


def feed_prefix(part: Path, length: int, checker: ChunkWorker) -> None:
    """Run the content check over the bytes a resumed download already has on disk."""
    with part.open("rb") as file:
        remaining = length
        while remaining and (block := file.read(min(remaining, _PREFIX_READ))):
            checker.put(block)
            remaining -= len(block)


def _store_body(
    response: httpx.Response,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
    part: PartFile,
) -> DownloadResult:
    url = request.url
    resume = part.resume
    offset = resume.offset if resume is not None else 0
    announced = parse_content_length(response.headers.get("Content-Length"))
    if resume is not None:
        total: int | None = resume.total
    else:
        total = announced
        _check_announced_length(response, request, announced)
        point = _resume_point_for(response, url, announced)
        if point is not None:
            part.allow_resume(point)
    progress.start(request.name, total, already=offset)
    received = 0
    try:
        with part:
            # native: write, hash and check run on the sink's Rust threads (the prefix's check too)
            verifier = getattr(check, "native_verifier", None) if BACKEND == "native" else None
            sink = part.open_sink(offset, verifier, blake3=request.blake3, total=total)
            writer: ChunkFeed = (
                ChunkWorker(sink.write, name="sink")
                if BACKEND == "python"
                else InlineFeed(sink.write)
            )
            checker = ChunkWorker(check.feed, name="check") if check and verifier is None else None
            try:
                if checker is not None and offset:
                    feed_prefix(part.path, offset, checker)
                received = _receive(response, request, offset, total, writer, checker, progress)
                writer.close()
                if checker is not None:
                    checker.close()
                digest = sink.finish(fsync=True)
                summary = check.finish() if check is not None else ContentSummary()
            except BaseException as exc:
                if checker is not None:
                    checker.cancel()
                if part.keeps(exc):
                    drain(writer)  # every byte received reaches the part file: less next time
                writer.cancel()
                sink.abort()
                if isinstance(exc, ValueError) and verifier is not None:  # the sink's check
                    raise VerificationError(url, str(exc)) from exc
                raise
            request.check_sha256(digest)
            part.move_into_place()
    finally:
        progress.stop()
    return DownloadResult(
        status="downloaded",
        final_url=str(response.url),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        path=request.final_path,
        bytes=offset + received,
        sha256=digest,
        blake3=sink.blake3_hexdigest(),
        bytes_transferred=received,
        summary=summary,
    )


def _receive(
    response: httpx.Response,
    request: DownloadRequest,
    offset: int,
    total: int | None,
    writer: ChunkFeed,
    checker: ChunkWorker | None,
    progress: ProgressReporter,
) -> int:
    """Hand every chunk of the body to the writer (and checker); return the bytes received."""
    url = request.url
    received = 0
    with httpx_errors_as_transfer_errors(url, "GET body"):
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
                request.check_limits(offset + received)
                writer.put(chunk)
                if checker is not None:
                    checker.put(chunk)
                progress.advance(len(chunk))
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise IncompleteBodyError(
                url, f"connection lost after {offset + received} of {total or '?'} bytes ({exc})"
            ) from exc
    if total is not None and offset + received != total:
        raise IncompleteBodyError(
            url, f"body ended at {offset + received} bytes but {total} were announced"
        )
    return received


def drain(writer: ChunkFeed) -> None:
    """Let the writer finish what is queued; its own error (a full disk) is reported elsewhere."""
    with contextlib.suppress(Exception):
        writer.close()
