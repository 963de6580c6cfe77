"""HTTP(S) bodies: the one-stream conversation (conditional GET, resume), or ranges; the engine."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from functools import partial

import httpx

from ed_extractor.errors import ProtocolError
from ed_extractor.headers import (
    accepts_byte_ranges,
    if_range_validator,
    parse_content_length,
    parse_content_range,
)
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.landing import landing_for
from ed_extractor.services.file_transfer.part_file import PartFile, PartFileStale
from ed_extractor.services.file_transfer.ramp import RampPolicy
from ed_extractor.services.file_transfer.range_engine import (
    RangeDownload,
    SegmentsRefused,
    connection_count,
    ramp_policy,
)
from ed_extractor.services.file_transfer.resume import ResumePoint

log = logging.getLogger(__name__)


def transfer(
    client: httpx.Client,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
) -> DownloadResult:
    """GET ``request.url`` and store the raw body atomically at ``request.final_path``.

    Several connections go straight to the range engine. One stream starts with a conversation:
    a kept part file is continued with ``Range``/``If-Range``; without one the GET is conditional
    on the recorded validators (304: unchanged). A part file that turns out not to fit is
    discarded once the response is closed, and the download starts over.
    """
    part = _part_file(request)
    connections = connection_count(request, part.resume)
    if connections > 1 or (part.resume is not None and part.resume.segments):
        try:
            return _ranges(client, request, check, progress, part, connections)
        except (SegmentsRefused, PartFileStale) as exc:
            log.info("segmented download refused; one connection from scratch",
                     extra={"source": request.name, "reason": str(exc)})  # fmt: skip
            part = _part_file(request)
    try:
        return _attempt(client, request, check, progress, part)
    except PartFileStale:
        return _attempt(client, request, check, progress, _part_file(request))


def _part_file(request: DownloadRequest) -> PartFile:
    """The part file of ``request``, landing at the request's destination."""
    return PartFile(request.final_path, request.url, landing_for(request))


def _ranges(
    client: httpx.Client,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
    part: PartFile,
    connections: int,
) -> DownloadResult:
    """Several ranged connections (or the ramp) into a part file of the final size."""
    engine = ranged_download(
        client, request, part, connections, ramp=ramp_policy(request.connections)
    )
    return engine.run(check, progress)


def ranged_download(
    client: httpx.Client,
    request: DownloadRequest,
    part: PartFile,
    connections: int,
    *,
    ramp: RampPolicy | None = None,
) -> RangeDownload:
    """The engine for ``request`` over ``connections`` ranged GETs (``If-Range``) into ``part``.

    A kept sized part is continued under its sidecar's validator; SegmentsRefused when the probe
    already saw another version of the file.
    """
    resume = part.resume
    validator = if_range_validator(request.expected_etag, request.expected_last_modified)
    if resume is not None and resume.segments:
        if validator not in (None, resume.validator):  # the probe already saw another file
            part.discard()
            raise SegmentsRefused("the file changed since the part file was written")
        total: int | None = resume.total
        validator = resume.validator
    else:
        total = request.expected_length
    opener = partial(_open_range, client, request.url, validator)
    return RangeDownload(
        request, part, opener, total, validator=validator, connections=connections, ramp=ramp
    )


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
            return _store_body(client, response, request, check, progress, part)
        if status == httpx.codes.OK:
            if resume is not None:
                log.info("server sent the whole file instead of the rest; starting over",
                         extra={"source": request.name})  # fmt: skip
                part.discard()
            return _store_body(client, response, request, check, progress, part)
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


def _store_body(
    client: httpx.Client,
    response: httpx.Response,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
    part: PartFile,
) -> DownloadResult:
    """The body of ``response`` (the whole file, or the tail of the kept part) as one range."""
    resume = part.resume
    if resume is not None:
        total: int | None = resume.total
    else:
        total = parse_content_length(response.headers.get("Content-Length"))
        _check_announced_length(response, request, total)
        point = _resume_point_for(response, request.url, total)
        if point is not None:
            part.allow_resume(point)
    opener = partial(_open_range, client, request.url, None)
    return RangeDownload(request, part, opener, total, first=response).run(check, progress)


def _open_range(
    client: httpx.Client, url: str, validator: str | None, first: int, end: int | None
) -> AbstractContextManager[httpx.Response]:
    """The GET of ``[first, end)`` with ``If-Range`` (``end`` None: to the end of the file)."""
    last = "" if end is None else str(end - 1)
    headers = {"Accept-Encoding": "identity", "Range": f"bytes={first}-{last}"}
    if validator is not None:
        headers["If-Range"] = validator
    return client.stream("GET", url, headers=headers)
