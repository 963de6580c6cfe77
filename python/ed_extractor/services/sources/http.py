"""The HTTP(S) source: HEAD (or a ranged GET when HEAD cannot be believed), the sample, the body."""

from __future__ import annotations

import logging
from typing import ClassVar, Final, Literal

import httpx

from ed_extractor.errors import ProbeError
from ed_extractor.headers import accepts_byte_ranges, parse_content_length, parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.paths import validate_url
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.transfer import transfer
from ed_extractor.services.source_probe.models import HeadInfo
from ed_extractor.services.source_probe.sniff import SAMPLE_SIZE
from ed_extractor.services.sources.base import CheckLookup
from ed_extractor.vocabulary import Regime

log = logging.getLogger(__name__)

SAMPLE_RANGE: Final = f"bytes=0-{SAMPLE_SIZE - 1}"


class HttpSource:
    """An http(s) URL: validators from HEAD, ranges with ``If-Range`` (``transfer``)."""

    kind: ClassVar[str] = "http"

    def head(self, client: httpx.Client, url: str) -> HeadInfo:
        """Size and validators of ``url``: a HEAD, or the ranged GET when HEAD cannot be believed.

        HEAD is believed only when it answers 2xx with a Content-Length. Anything else (405 and 501
        from servers that refuse HEAD, 403/404 from servers that answer HEAD differently from GET,
        a 200 without a length) is settled by the ranged GET, whose sample is kept.
        """
        validate_url(url)
        with httpx_errors_as_transfer_errors(url, "HEAD"):
            response = client.head(url)
        length = parse_content_length(response.headers.get("Content-Length"))
        if response.is_success and length is not None:
            return _head_info(
                url,
                response,
                "HEAD",
                content_length=length,
                is_range_supported=accepts_byte_ranges(response.headers.get("Accept-Ranges")),
            )
        log.debug("HEAD %s answered %s without a usable length; ranged GET instead", url, response)
        return self.ranged_sample(client, url)

    def regime(self, content: Regime) -> Regime:
        """An HTTP download is recorded under its content's regime (gzip, json, ...)."""
        return content

    def download(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        check: ContentCheck | None,
        checks: CheckLookup,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """The body through the one-stream conversation or ranges, into the range engine."""
        return transfer(client, request, check, progress)

    def ranged_sample(self, client: httpx.Client, url: str) -> HeadInfo:
        """GET ``Range: bytes=0-1023`` streamed; read at most one socket chunk past the sample."""
        validate_url(url)
        with (
            httpx_errors_as_transfer_errors(url, "ranged GET"),
            client.stream("GET", url, headers={"Range": SAMPLE_RANGE}) as response,
        ):
            if response.status_code == 416:
                sample = b""
            elif not response.is_success:
                raise status_error(url, response, "ranged GET")
            else:
                sample = _read_sample(response)
        headers = response.headers
        if response.status_code == 206:
            value = headers.get("Content-Range")
            if value is None:
                raise ProbeError(url, "206 Partial Content without a Content-Range header")
            content_range = parse_content_range(value, url)
            if content_range.start != 0:
                raise ProbeError(url, f"asked for {SAMPLE_RANGE} but got Content-Range {value!r}")
            return _head_info(
                url,
                response,
                "GET",
                content_length=content_range.total,
                is_range_supported=True,
                sample=sample,
            )
        if response.status_code == 416:
            value = headers.get("Content-Range")
            total = None if value is None else parse_content_range(value, url).total
            if total:
                raise ProbeError(url, f"the server refused {SAMPLE_RANGE} of a {total}-byte body")
            return _head_info(
                url, response, "GET", content_length=total, is_range_supported=True, sample=sample
            )
        return _head_info(
            url,
            response,
            "GET",
            content_length=parse_content_length(headers.get("Content-Length")),
            is_range_supported=False,
            sample=sample,
        )


def _head_info(
    url: str,
    response: httpx.Response,
    method: Literal["HEAD", "GET"],
    *,
    content_length: int | None,
    is_range_supported: bool,
    sample: bytes | None = None,
) -> HeadInfo:
    headers = response.headers
    return HeadInfo(
        url=url,
        final_url=str(response.url),
        status_code=response.status_code,
        method=method,
        content_length=content_length,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        is_range_supported=is_range_supported,
        content_type=headers.get("Content-Type"),
        content_encoding=headers.get("Content-Encoding"),
        sample=sample,
    )


def _read_sample(response: httpx.Response) -> bytes:
    """The first SAMPLE_SIZE raw (never content-decoded) bytes of a streamed response.

    A short body is read to its end so that the connection can be reused; a long one (a server
    that ignored Range and sends the whole dump) is abandoned after the chunk that completes the
    sample, and closing the response then drops the connection.
    """
    declared = parse_content_length(response.headers.get("Content-Length"))
    read_to_end = declared is not None and declared <= SAMPLE_SIZE
    buffer = bytearray()
    for chunk in response.iter_raw():
        buffer += chunk
        if len(buffer) >= SAMPLE_SIZE and not read_to_end:
            break
    return bytes(buffer[:SAMPLE_SIZE])
