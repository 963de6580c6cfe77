"""SourceProber: HEAD (or a ranged GET) plus a streamed 1 KiB sample, sniffed into a ProbeResult."""

from __future__ import annotations

import logging
from typing import Literal

import httpx

from ed_extractor.errors import ProbeError
from ed_extractor.headers import accepts_byte_ranges, parse_content_length, parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.manifest.models import ContentRegime
from ed_extractor.paths import validate_url

from .models import HeadInfo, ProbeResult
from .sniff import SAMPLE_SIZE, Expectation, check_expected, expectation_for, sniff_mime

log = logging.getLogger(__name__)

SAMPLE_RANGE = f"bytes=0-{SAMPLE_SIZE - 1}"


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


class SourceProber:
    """Find out what a URL serves, reading at most one small sample of its body."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def probe(self, url: str, *, expect: ContentRegime | None = None) -> ProbeResult:
        """HEAD and sample ``url``; check the sniffed type against ``expect`` or the extension.

        Raises InvalidURLError for a non-http(s) URL, ConfigError for an unknown ``expect``,
        TransferError for an error status or a network failure, ProbeError for a malformed
        Content-Range, and UnexpectedContentError when the body is not what is expected.
        """
        expected = expectation_for(url, expect)
        return self._sample(url, self.head(url), expected)

    def head(self, url: str) -> HeadInfo:
        """Size and validators of ``url``: a HEAD, or the ranged GET when HEAD cannot be believed.

        HEAD is believed only when it answers 2xx with a Content-Length. Anything else (405 and 501
        from servers that refuse HEAD, 403/404 from servers that answer HEAD differently from GET,
        a 200 without a length) is settled by the ranged GET, whose sample is kept for ``sample``.
        """
        validate_url(url)
        with httpx_errors_as_transfer_errors(url, "HEAD"):
            response = self._client.head(url)
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
        return self._ranged_get(url)

    def sample(
        self, url: str, head: HeadInfo | None, *, expect: ContentRegime | None = None
    ) -> ProbeResult:
        """Fetch the first bytes of ``url`` (unless ``head`` holds them), sniff and check them.

        ``expect`` and the URL's extension are checked as in ``probe``; ``head`` (from ``head``)
        supplies the validators and length, else they come from the ranged GET.
        """
        return self._sample(url, head, expectation_for(url, expect))

    def _sample(self, url: str, head: HeadInfo | None, expected: Expectation | None) -> ProbeResult:
        got = head if head is not None and head.sample is not None and head.url == url else None
        if got is None:
            validate_url(url)
            got = self._ranged_get(url)
        base = head if head is not None else got
        content_length = base.content_length
        if got.is_range_supported and got.content_length is not None:
            if content_length not in (None, got.content_length):
                log.warning(
                    "%s: HEAD says %s bytes, Content-Range says %s; using Content-Range",
                    url,
                    content_length,
                    got.content_length,
                )
            content_length = got.content_length
        elif content_length is None:
            content_length = got.content_length
        result = ProbeResult(
            url=url,
            final_url=got.final_url,
            status_code=base.status_code,
            content_length=content_length,
            etag=base.etag or got.etag,
            last_modified=base.last_modified or got.last_modified,
            mime_type=sniff_mime(got.sample or b""),
            is_range_supported=got.is_range_supported,
            content_type=base.content_type or got.content_type,
            content_encoding=base.content_encoding or got.content_encoding,
        )
        check_expected(url, expected, result.mime_type)
        return result

    def _ranged_get(self, url: str) -> HeadInfo:
        """GET ``Range: bytes=0-1023`` streamed; read at most one socket chunk past the sample."""
        with (
            httpx_errors_as_transfer_errors(url, "ranged GET"),
            self._client.stream("GET", url, headers={"Range": SAMPLE_RANGE}) as response,
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
