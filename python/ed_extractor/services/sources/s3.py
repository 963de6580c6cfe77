"""The S3 source: an ``s3://`` object fetched part by part (or range by range), verified.

Every request carries ``If-Match: <ETag>``: a 412 means the object was replaced, and the download
starts over with the new version. Over several connections the object's parts (``GET
?partNumber=N``; 8-64 MiB ranges of a single-part object) go through the range engine into one
part file of the object's size; over one, they stream in order. Either way SHA-256 and
the checks run in file order: the content check of what the probe sniffed, and the object's own
checksums (part MD5s against a multipart ETag, full-object CRCs). The sidecar holds the object's
ETag (and, segmented, every range's progress), so an interrupted download continues where its
bytes stop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import ClassVar, Final

import httpx

from ed_extractor.errors import ProtocolError, TransferError
from ed_extractor.paths import validate_url
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.part_file import PartFile, PartFileStale
from ed_extractor.services.file_transfer.range_engine import (
    AUTO_THRESHOLD,
    RangeDownload,
    SegmentsRefused,
    connections_per_file,
    ramp_policy,
)
from ed_extractor.services.file_transfer.resume import ResumePoint, discard_part
from ed_extractor.services.s3.access import S3Access, s3_error
from ed_extractor.services.s3.checks import CombinedCheck, S3ObjectCheck
from ed_extractor.services.s3.objects import S3Object
from ed_extractor.services.s3.probe import S3Prober
from ed_extractor.services.source_probe.models import HeadInfo
from ed_extractor.services.sources.base import CheckLookup
from ed_extractor.vocabulary import Regime

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


class S3Source:
    """An ``s3://`` object: signed HEAD and sample, part GETs (in parallel if allowed).

    S3's own checksums (part MD5s, full-object CRCs) are checked beside the content check.
    """

    kind: ClassVar[str] = "s3"

    def __init__(self, access: S3Access) -> None:
        self._access = access

    def head(self, client: httpx.Client, url: str) -> HeadInfo:
        """One signed HEAD (checksums on); the description is kept for the download."""
        return S3Prober(client, self._access).head(validate_url(url))

    def ranged_sample(self, client: httpx.Client, url: str) -> HeadInfo:
        """The object's first bytes (signed ranged GET)."""
        return S3Prober(client, self._access).ranged_get(validate_url(url))

    def regime(self, content: Regime) -> Regime:
        """Every object is recorded as ``s3-multipart`` (single-part ones included)."""
        return "s3-multipart"

    def download(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        check: ContentCheck | None,
        checks: CheckLookup,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """Fetch the object into place; start over (a few times) when it is replaced meanwhile."""
        prober = S3Prober(client, self._access)
        for _ in range(_RESTARTS):
            obj = prober.describe(request.url)
            try:
                return self._fetch(client, request, obj, check, progress)
            except ObjectChangedError as exc:
                log.warning("object replaced during the download; starting over",
                            extra={"source": request.name, "error": str(exc)})  # fmt: skip
                discard_part(request.final_path)
        raise TransferError(request.url, f"the object was replaced {_RESTARTS} times meanwhile")

    def _fetch(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        obj: S3Object,
        content: ContentCheck | None,
        progress: ProgressReporter,
    ) -> DownloadResult:
        part = PartFile(request.final_path, request.url)
        resume = part.resume
        if resume is not None and (resume.validator, resume.total) != (obj.etag, obj.size):
            part.discard()  # written for another version of the object
        connections = _connections(request, obj, part)
        try:
            return self._ranges(client, request, obj, part, connections, content, progress)
        except (SegmentsRefused, PartFileStale) as exc:
            if connections == 1:
                raise ProtocolError(request.url, str(exc)) from exc
            log.info("segmented download refused; one connection from scratch",
                     extra={"source": request.name, "reason": str(exc)})  # fmt: skip
        part = PartFile(request.final_path, request.url)
        part.discard()
        try:
            return self._ranges(client, request, obj, part, 1, content, progress)
        except (SegmentsRefused, PartFileStale) as exc:
            raise ProtocolError(request.url, str(exc)) from exc

    def _ranges(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        obj: S3Object,
        part: PartFile,
        connections: int,
        content: ContentCheck | None,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """The object's parts (or ranges) over ``connections`` connections through the engine.

        One connection continues a prefix part file; several write a part file of the object's
        size (the sidecar holds each part's progress).
        """
        sized = connections > 1 or bool(part.resume and part.resume.segments)
        if not sized:
            part.allow_resume(ResumePoint(request.url, obj.etag, obj.size))
        ranges = tuple(
            (start, start, start + length) for start, length in plan_segments(obj, connections)
        )
        pinned = dataclasses.replace(request, expected_length=obj.size, expected_etag=obj.etag)
        engine = RangeDownload(
            pinned, part, partial(self._open, client, request.url, obj), obj.size,
            validator=obj.etag, connections=connections, ranges=ranges,
            ramp=ramp_policy(request.connections) if sized else None,
        )  # fmt: skip
        checks = [check for check in (content, S3ObjectCheck(obj)) if check is not None]
        result = engine.run(CombinedCheck(checks), progress)
        return dataclasses.replace(
            result, final_url=obj.http_url, etag=obj.etag, last_modified=obj.last_modified
        )

    @contextmanager
    def _open(
        self, client: httpx.Client, url: str, obj: S3Object, first: int, end: int | None
    ) -> Iterator[httpx.Response]:
        """The signed GET of ``[first, end)``: a whole part by ``partNumber``, else a Range."""
        headers = {"If-Match": obj.etag}
        query: dict[str, str | int] = {}
        end = obj.size if end is None else end
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
