"""S3Prober: what an S3 object is (HEAD with checksums, the part layout) and its first bytes."""

from __future__ import annotations

import dataclasses
from typing import Final

import httpx

from ed_extractor.errors import ProbeError, TransferError
from ed_extractor.headers import parse_content_length, parse_content_range
from ed_extractor.http import httpx_errors_as_transfer_errors
from ed_extractor.services.s3.access import S3Access, S3Error, s3_error
from ed_extractor.services.s3.objects import CHECKSUM_HEADERS, S3Object
from ed_extractor.services.source_probe.models import HeadInfo
from ed_extractor.services.source_probe.sniff import SAMPLE_SIZE

_ERROR_BODY_LIMIT: Final = 64 << 10
_CHECKSUM_MODE: Final = {"x-amz-checksum-mode": "ENABLED"}


def _described(url: str, head: httpx.Response) -> S3Object:
    """The object a HEAD (checksum mode on) describes; its part layout is not known yet."""
    headers = head.headers
    size = parse_content_length(headers.get("Content-Length"))
    etag = headers.get("ETag")
    if size is None or etag is None:
        raise ProbeError(url, "S3 HEAD answered without Content-Length or ETag")
    encrypted = (
        headers.get("x-amz-server-side-encryption", "").lower().startswith("aws:kms")
        or "x-amz-server-side-encryption-customer-algorithm" in headers
    )
    full_object = headers.get("x-amz-checksum-type", "FULL_OBJECT").upper() == "FULL_OBJECT"
    checksums = {
        name: value
        for name, header in CHECKSUM_HEADERS.items()
        if (value := headers.get(header)) and full_object and "-" not in value
    }
    return S3Object(
        url=url,
        http_url=str(head.url),
        size=size,
        etag=etag,
        last_modified=headers.get("Last-Modified"),
        checksums=checksums,
        encrypted=encrypted,
    )


class S3Prober:
    """HEADs and samples ``s3://`` objects through one S3Access and the shared client."""

    def __init__(self, client: httpx.Client, access: S3Access) -> None:
        self._client = client
        self._access = access

    def head(self, url: str) -> HeadInfo:
        """The HeadInfo of the object: one signed HEAD (checksums on), no body asked for.

        The object's description (``S3Object``) is kept in the S3Access for ``describe``, so
        that the download that follows the probe does not ask for it again.
        """
        response = self._head(url, _CHECKSUM_MODE)
        self._access.remember(_described(url, response))
        return HeadInfo(
            url=url,
            final_url=str(response.url),
            status_code=response.status_code,
            content_length=parse_content_length(response.headers.get("Content-Length")),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            is_range_supported=True,
            content_type=response.headers.get("Content-Type"),
            content_encoding=response.headers.get("Content-Encoding"),
        )

    def describe(self, url: str) -> S3Object:
        """The object with its part layout: what ``head`` learnt (once), else a new HEAD.

        Only a multipart object costs a request more (``HEAD ?partNumber=1``, If-Match its
        ETag); when the object was replaced since ``head``, the description starts over.
        """
        held = self._access.recall(url)
        if held is not None:
            try:
                return self._with_layout(held)
            except S3Error as exc:
                if exc.status_code != httpx.codes.PRECONDITION_FAILED:
                    raise
        return self._with_layout(_described(url, self._head(url, _CHECKSUM_MODE)))

    def _with_layout(self, obj: S3Object) -> S3Object:
        """``obj`` with its part count and size (a single-part object has nothing to learn)."""
        if not obj.multipart:
            return obj
        url = obj.url
        first = self._head(url, {"If-Match": obj.etag}, partNumber=1)
        parts = parse_content_length(first.headers.get("x-amz-mp-parts-count"))
        part_size = parse_content_length(first.headers.get("Content-Length"))
        if not parts or not part_size:
            raise ProbeError(url, "HEAD ?partNumber=1 gave no x-amz-mp-parts-count or length")
        layout = dataclasses.replace(obj, parts=parts, part_size=part_size)
        if len(layout.part_ranges()) != parts:
            raise ProbeError(
                url,
                f"{parts} parts of {part_size} bytes cannot make {obj.size} bytes "
                "(parts of unequal size are not supported)",
            )
        return layout

    def ranged_get(self, url: str) -> HeadInfo:
        """The object's first SAMPLE_SIZE bytes (an empty object answers 416: no sample)."""
        request = self._access.request(
            self._client, "GET", url, headers={"Range": f"bytes=0-{SAMPLE_SIZE - 1}"}
        )
        with httpx_errors_as_transfer_errors(url, "S3 ranged GET"):
            response = self._access.send(self._client, request, stream=True)
            try:
                body = response.read()  # at most SAMPLE_SIZE bytes, or a small error document
            finally:
                response.close()
        length: int | None
        if response.status_code == 416:
            sample, length = b"", 0
        elif response.status_code in (200, 206):
            sample = body[:SAMPLE_SIZE]
            value = response.headers.get("Content-Range")
            length = (
                parse_content_range(value, url).total
                if value
                else parse_content_length(response.headers.get("Content-Length"))
            )
        else:
            raise s3_error(url, response, "S3 ranged GET", body)
        return HeadInfo(
            url=url,
            final_url=str(response.url),
            status_code=response.status_code,
            method="GET",
            content_length=length,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            is_range_supported=True,
            content_type=response.headers.get("Content-Type"),
            content_encoding=response.headers.get("Content-Encoding"),
            sample=sample,
        )

    def _head(self, url: str, headers: dict[str, str], **query: str | int) -> httpx.Response:
        request = self._access.request(self._client, "HEAD", url, headers=headers, **query)
        with httpx_errors_as_transfer_errors(url, f"S3 HEAD at {self._access.endpoint}"):
            response = self._access.send(self._client, request)
        if response.is_success:
            return response
        raise self._explain(url, response)

    def _explain(self, url: str, head: httpx.Response) -> TransferError:
        """A HEAD error has no body: ask for one byte to learn S3's error code, when it is 4xx."""
        if not 400 <= head.status_code < 500 or head.status_code == 412:
            return s3_error(url, head, "S3 HEAD")
        request = self._access.request(self._client, "GET", url, headers={"Range": "bytes=0-0"})
        with httpx_errors_as_transfer_errors(url, "S3 GET"):
            response = self._access.send(self._client, request, stream=True)
            try:
                body = b""
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > _ERROR_BODY_LIMIT:
                        break
            finally:
                response.close()
        if response.is_success:  # the HEAD failure was transient
            return s3_error(url, head, "S3 HEAD")
        return s3_error(url, response, "S3 GET", body)
