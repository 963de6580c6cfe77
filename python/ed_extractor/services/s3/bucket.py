"""Bucket: the plain object operations (HEAD, GET, PUT, DELETE, list) on one bucket, signed."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

import httpx

from ed_extractor.errors import DestinationError, TransferError
from ed_extractor.headers import parse_content_length
from ed_extractor.http import httpx_errors_as_transfer_errors
from ed_extractor.services.s3.access import (
    MissingCredentialsError,
    S3Access,
    S3Error,
    s3_error,
)
from ed_extractor.services.s3.location import SCHEME, S3Location
from ed_extractor.services.s3.objects import CHECKSUM_HEADERS, PAYLOAD_HASH

SMALL_OBJECT_LIMIT: Final = 1 << 20
"""The most bytes ``get`` reads: it is for records, not for data files."""
STREAM_CHUNK: Final = 4 << 20
_ERROR_BODY_LIMIT: Final = 64 << 10
_META_PREFIX: Final = "x-amz-meta-"
#: What a request whose body streams says instead of the body's SHA-256 (MD5s/CRCs guard it).
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
Body = bytes | Iterator[bytes] | None
"""A request body: bytes, chunks streamed as they are produced, or none."""


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` headers; values percent-encoded where they are not printable ASCII."""
    return {f"{_META_PREFIX}{name}": _header_text(value) for name, value in metadata.items()}


def _header_text(value: str) -> str:
    """``value`` as is when it is printable ASCII, else percent-encoded (a URL's own form)."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%"))


_CHECKSUM_MODE: Final = {"x-amz-checksum-mode": "ENABLED"}


class ObjectTooLargeError(TransferError):
    """``get`` met an object larger than its limit (not a small record)."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url, f"object larger than {limit} bytes", retryable=False)


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD says about an object: size, validators, user metadata, whole-object checksums."""

    key: str
    size: int
    etag: str
    last_modified: str | None
    metadata: dict[str, str] = field(default_factory=dict)  # x-amz-meta-NAME -> NAME: value
    checksums: dict[str, str] = field(default_factory=dict)  # crc64nvme... -> base64


@dataclass(frozen=True)
class ListedObject:
    """One entry of a listing."""

    key: str
    size: int
    etag: str
    last_modified: str


def _head_of(key: str, response: httpx.Response) -> ObjectHead:
    headers = response.headers
    full_object = headers.get("x-amz-checksum-type", "FULL_OBJECT").upper() == "FULL_OBJECT"
    return ObjectHead(
        key=key,
        size=parse_content_length(headers.get("Content-Length")) or 0,
        etag=headers.get("ETag", ""),
        last_modified=headers.get("Last-Modified"),
        metadata={
            name[len(_META_PREFIX) :]: value
            for name, value in headers.items()
            if name.lower().startswith(_META_PREFIX)
        },
        checksums={
            name: value
            for name, header in CHECKSUM_HEADERS.items()
            if (value := headers.get(header)) and full_object and "-" not in value
        },
    )


def _listing(url: str, body: bytes) -> tuple[list[ListedObject], str | None]:
    """The objects of one ListObjectsV2 page and the token of the next page (None: the last)."""
    try:
        root = ET.fromstring(body)  # the configured endpoint's answer
    except ET.ParseError as exc:
        raise TransferError(url, f"S3 listing is not XML: {exc}", retryable=False) from None
    objects = [
        ListedObject(
            key=entry.findtext("{*}Key", ""),
            size=int(entry.findtext("{*}Size", "0")),
            etag=entry.findtext("{*}ETag", ""),
            last_modified=entry.findtext("{*}LastModified", ""),
        )
        for entry in root.iterfind("{*}Contents")
    ]
    truncated = root.findtext("{*}IsTruncated", "false").strip().lower() == "true"
    token = root.findtext("{*}NextContinuationToken") if truncated else None
    return objects, token or None


class Bucket:
    """One bucket's objects through ``access`` (endpoint, credentials) and the shared ``client``.

    S3's refusals are S3Error (``code``: ``NoSuchKey``, ``AccessDenied``...); a connection
    failure is TransferError; both carry the ``s3://`` URL they are about.
    """

    def __init__(self, access: S3Access, client: httpx.Client, name: str) -> None:
        self.access = access
        self.name = name
        self._client = client

    def named(self, name: str) -> Bucket:
        """Another bucket, through the same access and client."""
        return self if name == self.name else Bucket(self.access, self._client, name)

    def url(self, key: str = "") -> str:
        """The ``s3://`` URL of ``key`` (of the bucket itself without one), for messages."""
        return f"{SCHEME}{self.name}/{key}"

    def check_bucket(self) -> None:
        """Make sure the bucket exists and the credentials may use it (one HEAD).

        A missing bucket, refused credentials or no credentials at all are DestinationError
        (a configuration error); other failures are TransferError.
        """
        url = self.url()
        try:
            response = self.send("HEAD", "", f"S3 HEAD bucket at {self.access.endpoint}")
        except MissingCredentialsError as exc:
            raise DestinationError(url, exc.message) from None
        if response.status_code == httpx.codes.NOT_FOUND:
            raise DestinationError(url, f"bucket {self.name} does not exist")
        if response.status_code in (httpx.codes.FORBIDDEN, httpx.codes.UNAUTHORIZED):
            raise DestinationError(
                url, f"access denied to bucket {self.name} (check the credentials)"
            )
        if not response.is_success:
            raise s3_error(url, response, "S3 HEAD bucket")

    def head(self, key: str, *, checksums: bool = False) -> ObjectHead | None:
        """What the object ``key`` is (whole-object checksums too when asked), None if absent."""
        headers = _CHECKSUM_MODE if checksums else {}
        response = self.send("HEAD", key, "S3 HEAD", headers=headers)
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if not response.is_success:
            raise s3_error(self.url(key), response, "S3 HEAD")
        return _head_of(key, response)

    def get(self, key: str, *, limit: int = SMALL_OBJECT_LIMIT) -> bytes:
        """The whole of a small object; S3Error (HTTP 404) if absent, ObjectTooLargeError if big."""
        body = bytearray()
        for chunk in self.stream(key):
            body += chunk
            if len(body) > limit:
                raise ObjectTooLargeError(self.url(key), limit)
        return bytes(body)

    def stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks of at most STREAM_CHUNK, as they arrive.

        S3Error (HTTP 404: ``exc.status_code``) when the object is absent; the connection is
        released when the iterator is exhausted or closed.
        """
        url = self.url(key)
        request = self._request("GET", key)
        with httpx_errors_as_transfer_errors(url, "S3 GET"):
            response = self.access.send(self._client, request, stream=True)
            try:
                if not response.is_success:
                    raise s3_error(url, response, "S3 GET", _bounded_body(response))
                yield from response.iter_raw(STREAM_CHUNK)
            finally:
                response.close()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Store ``data`` as ``key`` in one PUT (the server checks its MD5); return the ETag."""
        headers = {
            "Content-Type": content_type,
            "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode("ascii"),
            PAYLOAD_HASH: hashlib.sha256(data).hexdigest(),
            **metadata_headers(metadata or {}),
        }
        response = self.send("PUT", key, "S3 PUT", headers=headers, content=data)
        if not response.is_success:
            raise s3_error(self.url(key), response, "S3 PUT", response.content)
        return str(response.headers.get("ETag", ""))

    def delete(self, key: str) -> None:
        """Remove the object ``key`` (removing an absent object is not an error)."""
        response = self.send("DELETE", key, "S3 DELETE")
        if not response.is_success and response.status_code != httpx.codes.NOT_FOUND:
            raise s3_error(self.url(key), response, "S3 DELETE", response.content)

    def list(self, prefix: str, *, page_size: int = 1000) -> Iterator[ListedObject]:
        """Every object whose key starts with ``prefix``, in key order, page after page."""
        token: str | None = None
        while True:
            query: dict[str, str | int] = {"list-type": 2, "prefix": prefix, "max-keys": page_size}
            if token is not None:
                query["continuation-token"] = token
            response = self.send("GET", "", "S3 list", query=query)
            if not response.is_success:
                raise s3_error(self.url(prefix), response, "S3 list", response.content)
            objects, token = _listing(self.url(prefix), response.content)
            yield from objects
            if token is None:
                return

    def _request(
        self,
        method: str,
        key: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: Body = None,
        query: Mapping[str, str | int] | None = None,
    ) -> httpx.Request:
        target = self.access.object_url(S3Location(self.name, key), **(query or {}))
        sent = {"Accept-Encoding": "identity", **(headers or {})}
        if content is not None and not isinstance(content, bytes):
            sent.setdefault(PAYLOAD_HASH, UNSIGNED_PAYLOAD)
        return self._client.build_request(method, target, headers=sent, content=content)

    def send(
        self,
        method: str,
        key: str,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: Body = None,
        query: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        """Send one signed request whose answer is small (read whole); no status checked."""
        request = self._request(method, key, headers=headers, content=content, query=query)
        with httpx_errors_as_transfer_errors(self.url(key), what):
            return self.access.send(self._client, request)


def _bounded_body(response: httpx.Response) -> bytes:
    """The first bytes of an error response's body (S3's error document)."""
    body = b""
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > _ERROR_BODY_LIMIT:
            break
    return body


__all__ = [
    "Bucket",
    "ListedObject",
    "ObjectHead",
    "ObjectTooLargeError",
    "S3Error",
    "metadata_headers",
]
