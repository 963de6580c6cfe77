"""SourceProber: HEAD (or a ranged GET) plus a streamed 1 KiB sample, sniffed into a ProbeResult."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from ed_extractor.errors import InvalidURLError
from ed_extractor.vocabulary import ContentRegime

from .models import HeadInfo, ProbeResult
from .sniff import Expectation, check_expected, expectation_for, sniff_mime

if TYPE_CHECKING:
    from ed_extractor.services.sources import Sources

log = logging.getLogger(__name__)


def _content_length(url: str, base: HeadInfo, got: HeadInfo) -> int | None:
    """The body's length: a Content-Range total wins over HEAD's Content-Length."""
    if got.is_range_supported and got.content_length is not None:
        if base.content_length not in (None, got.content_length):
            log.warning("%s: HEAD says %s bytes, Content-Range says %s; using Content-Range",
                        url, base.content_length, got.content_length)  # fmt: skip
        return got.content_length
    return base.content_length if base.content_length is not None else got.content_length


class SourceProber:
    """Find out what a URL serves, reading at most one small sample of its body."""

    def __init__(self, client: httpx.Client, *, sources: Sources | None = None) -> None:
        """``sources``: the run's sources (default: HTTP, S3 with the default configuration)."""
        if sources is None:
            from ed_extractor.services.sources import Sources

            sources = Sources()
        self._client = client
        self._sources = sources

    def probe(self, url: str, *, expect: ContentRegime | None = None) -> ProbeResult:
        """HEAD and sample ``url``; check the sniffed type against ``expect`` or the extension.

        Raises InvalidURLError for a non-http(s) URL, ConfigError for an unknown ``expect``,
        TransferError for an error status or a network failure, ProbeError for a malformed
        Content-Range, and UnexpectedContentError when the body is not what is expected.
        """
        expected = expectation_for(url, expect)
        head = self.head(url)
        if head is None:
            raise InvalidURLError(url, "a magnet link is fetched from peers; it cannot be probed")
        return self._sample(url, head, expected)

    def head(self, url: str) -> HeadInfo | None:
        """Size and validators of ``url`` from its source (None: the bytes come from peers).

        Over HTTP a HEAD, or the ranged GET when HEAD cannot be believed (its sample is kept for
        ``sample``); for S3 one signed HEAD.
        """
        return self._sources.for_url(url).head(self._client, url)

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
            got = self._sources.for_url(url).ranged_sample(self._client, url)
        base = head if head is not None else got
        content_length = _content_length(url, base, got)
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
