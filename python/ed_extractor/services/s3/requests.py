"""S3Bucket: the signed object and multipart-upload requests of one bucket (bodies streamed)."""

from __future__ import annotations

import base64
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote

import httpx

from ed_extractor.errors import DestinationError, TransferError
from ed_extractor.http import httpx_errors_as_transfer_errors
from ed_extractor.services.s3.access import MissingCredentialsError, S3Access, s3_error
from ed_extractor.services.s3.location import S3Location

#: Bytes read from a part file per step while a part streams out (and its CRC is computed).
READ_STEP: Final = 1 << 20
#: What a request that carries its body says instead of the body's SHA-256 (TLS/CRCs guard it).
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
#: The most bytes of an S3 answer (XML) read into memory.
MAX_ANSWER_BYTES: Final = 4 << 20
META_PREFIX: Final = "x-amz-meta-"


def crc64nvme(data: bytes, previous: int = 0) -> int:
    """CRC-64/NVME (awscrt's, with CLMUL), continued from ``previous``."""
    from awscrt import checksums

    return int(checksums.crc64nvme(data, previous))


def encode_crc64(value: int) -> str:
    """S3's form of a CRC-64: the 8 big-endian bytes in base64."""
    return base64.b64encode(value.to_bytes(8, "big")).decode("ascii")


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` headers; values percent-encoded where they are not printable ASCII."""
    return {f"{META_PREFIX}{name}": _header_text(value) for name, value in metadata.items()}


def _header_text(value: str) -> str:
    """``value`` as is when it is printable ASCII, else percent-encoded (a URL's own form)."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%"))


@dataclass(frozen=True)
class FileRegion:
    """Bytes ``[offset, offset + length)`` of a local file: a part's body, read as it is sent."""

    path: Path
    offset: int
    length: int

    def chunks(self) -> Iterator[bytes]:
        """The region's bytes, READ_STEP at a time (OSError when the file is shorter)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            position, end = self.offset, self.offset + self.length
            while position < end:
                data = os.pread(fd, min(READ_STEP, end - position), position)
                if not data:
                    raise OSError(f"{self.path} ends at byte {position}, before {end}")
                position += len(data)
                yield data
        finally:
            os.close(fd)

    @property
    def end(self) -> int:
        """The first byte after the region."""
        return self.offset + self.length

    def digests(self, running_crc: int = 0) -> tuple[int, bytes, int]:
        """The region's CRC-64/NVME and MD5, and ``running_crc`` continued over it (one read)."""
        crc, running, md5 = 0, running_crc, hashlib.md5(usedforsecurity=False)
        for data in self.chunks():
            crc = crc64nvme(data, crc)
            running = crc64nvme(data, running)
            md5.update(data)
        return crc, md5.digest(), running


@dataclass(frozen=True)
class S3Answer:
    """An answer of S3, read: its status, headers and (capped) body."""

    status_code: int
    headers: httpx.Headers
    content: bytes


@dataclass(frozen=True)
class ObjectHead:
    """What a HEAD says of an object: size, ETag and user metadata."""

    size: int
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload the bucket holds that was never completed or aborted."""

    key: str
    upload_id: str
    initiated: datetime


class S3Bucket:
    """Signed requests about the objects of ``bucket`` over the run's HTTP client.

    Every error answer is raised as a TransferError (an S3Error when S3 names its code): its
    status, code and message in one line.
    """

    def __init__(self, access: S3Access, client: httpx.Client, bucket: str) -> None:
        self.access = access
        self.bucket = bucket
        self._client = client

    def url(self, key: str) -> str:
        """The ``s3://`` URL of ``key``."""
        return S3Location(self.bucket, key).url

    def send(
        self,
        method: str,
        key: str,
        *,
        query: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> S3Answer:
        """Send one signed request about ``key`` (``""``: the bucket); its answer, read (capped).

        A status outside ``ok`` raises the S3 error it carries.
        """
        url = self.url(key) if key else f"s3://{self.bucket}/"
        target = self.access.object_url(S3Location(self.bucket, key), **(query or {}))
        sent = {"Accept-Encoding": "identity", **(headers or {})}
        if content is not None or method in ("PUT", "POST"):
            sent.setdefault("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        with httpx_errors_as_transfer_errors(url, method):
            request = self._client.build_request(method, target, headers=sent, content=content)
            response = self.access.send(self._client, request, stream=True)
            try:
                body = _read_capped(response, url)
            finally:
                response.close()
        if response.status_code not in ok:
            raise s3_error(url, response, method, body)
        return S3Answer(response.status_code, response.headers, body)

    def check(self) -> None:
        """DestinationError (one line) unless the bucket exists and these credentials reach it."""
        where = f"s3://{self.bucket} at {self.access.endpoint}"
        try:
            answer = self.send("HEAD", "", ok=(200, 301, 400, 403, 404))
        except MissingCredentialsError as exc:
            raise DestinationError(f"{where}: {exc}") from None
        if answer.status_code == 404:
            raise DestinationError(f"bucket {where} does not exist")
        if answer.status_code in (400, 403):
            raise DestinationError(
                f"access to bucket {where} denied (HTTP {answer.status_code}): check the "
                "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the bucket's policy"
            )
        if answer.status_code == 301:
            raise DestinationError(f"bucket {where} is in another region (ED_EXTRACTOR_S3_REGION)")

    # --- objects ---

    def head(self, key: str) -> ObjectHead | None:
        """The object's size, ETag and user metadata; None when there is no such object."""
        response = self.send("HEAD", key, ok=(200, 404))
        if response.status_code == 404:
            return None
        metadata = {
            name[len(META_PREFIX) :]: value
            for name, value in response.headers.items()
            if name.lower().startswith(META_PREFIX)
        }
        size = int(response.headers.get("Content-Length", "0"))
        return ObjectHead(size, response.headers.get("ETag", ""), metadata)

    def put_region(
        self, key: str, region: FileRegion, metadata: Mapping[str, str], content_type: str
    ) -> str:
        """PUT ``region`` as the whole object ``key`` (checked by its MD5 and CRC); its ETag."""
        crc, md5, _ = region.digests()
        headers = {
            **metadata_headers(metadata),
            "Content-Type": content_type,
            "Content-Length": str(region.length),
            "Content-MD5": base64.b64encode(md5).decode("ascii"),
            "x-amz-checksum-crc64nvme": encode_crc64(crc),
        }
        response = self.send("PUT", key, headers=headers, content=region.chunks())
        return str(response.headers.get("ETag", ""))

    def replace_metadata(self, key: str, etag: str, metadata: Mapping[str, str]) -> None:
        """Give the object ``key`` (still version ``etag``) new user metadata: a copy onto itself.

        The copy happens in the store (no bytes pass through here); it fails when the object was
        replaced meanwhile (``x-amz-copy-source-if-match``).
        """
        headers = {
            **metadata_headers(metadata),
            "x-amz-copy-source": quote(f"/{self.bucket}/{key}"),
            "x-amz-copy-source-if-match": etag,
            "x-amz-metadata-directive": "REPLACE",
        }
        response = self.send("PUT", key, headers=headers)
        _raise_embedded_error(self.url(key), response)

    def delete(self, key: str) -> None:
        """Remove the object ``key`` (no error when it is not there)."""
        self.send("DELETE", key, ok=(200, 204, 404))

    # --- multipart uploads ---

    def create_upload(
        self, key: str, metadata: Mapping[str, str], content_type: str, *, crc64: bool
    ) -> str:
        """Start a multipart upload of ``key``; its id. ``crc64``: a full-object CRC-64/NVME."""
        headers = {**metadata_headers(metadata), "Content-Type": content_type}
        if crc64:
            headers["x-amz-checksum-algorithm"] = "CRC64NVME"
            headers["x-amz-checksum-type"] = "FULL_OBJECT"
        answer = self.send("POST", key, query={"uploads": ""}, headers=headers)
        upload_id = _xml_text(answer.content, "UploadId")
        if not upload_id:
            raise TransferError(self.url(key), "CreateMultipartUpload answered no UploadId")
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, region: FileRegion, checksum: dict[str, str]
    ) -> str:
        """Send part ``number`` (``region``) with its ``checksum`` header, which S3 checks; ETag."""
        headers = {"Content-Length": str(region.length), **checksum}
        query: dict[str, str | int] = {"partNumber": number, "uploadId": upload_id}
        answer = self.send("PUT", key, query=query, headers=headers, content=region.chunks())
        etag = str(answer.headers.get("ETag") or "")
        if not etag:
            raise TransferError(self.url(key), f"part {number} was answered without an ETag")
        return etag

    def complete_upload(
        self, key: str, upload_id: str, parts: list[tuple[int, str]], full_crc64: int | None
    ) -> tuple[str, str | None]:
        """Complete the upload from ``parts`` (number, ETag); the object's ETag and CRC-64/NVME.

        With ``full_crc64`` S3 checks the whole object's CRC against it before completing.
        """
        body = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{_xml_escape(etag)}</ETag></Part>"
            for number, etag in parts
        )
        document = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
        headers = {"Content-Type": "application/xml"}
        if full_crc64 is not None:
            headers["x-amz-checksum-crc64nvme"] = encode_crc64(full_crc64)
            headers["x-amz-checksum-type"] = "FULL_OBJECT"
        answer = self.send("POST", key, query={"uploadId": upload_id}, headers=headers,
                           content=document)  # fmt: skip
        _raise_embedded_error(self.url(key), answer)
        etag = _xml_text(answer.content, "ETag") or answer.headers.get("ETag", "")
        crc = _xml_text(answer.content, "ChecksumCRC64NVME") or answer.headers.get(
            "x-amz-checksum-crc64nvme"
        )
        return etag, crc

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload: its parts are dropped (no error when it is already gone)."""
        self.send("DELETE", key, query={"uploadId": upload_id}, ok=(200, 204, 404))

    def pending_uploads(self, prefix: str) -> list[PendingUpload]:
        """The multipart uploads in progress under ``prefix`` (every page)."""
        found: list[PendingUpload] = []
        query: dict[str, str | int] = {"uploads": "", "prefix": prefix}
        while True:
            answer = self.send("GET", "", query=query)
            root = ET.fromstring(answer.content)
            for upload in _children(root, "Upload"):
                initiated = _child_text(upload, "Initiated")
                found.append(
                    PendingUpload(
                        _child_text(upload, "Key"),
                        _child_text(upload, "UploadId"),
                        datetime.fromisoformat(initiated.replace("Z", "+00:00")),
                    )
                )
            if _child_text(root, "IsTruncated").lower() != "true":
                return found
            query = {
                **query,
                "key-marker": _child_text(root, "NextKeyMarker"),
                "upload-id-marker": _child_text(root, "NextUploadIdMarker"),
            }


def _read_capped(response: httpx.Response, url: str) -> bytes:
    """The answer's body, at most MAX_ANSWER_BYTES (a larger one is a TransferError)."""
    data = bytearray()
    for chunk in response.iter_raw():
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            raise TransferError(url, f"S3 answered more than {MAX_ANSWER_BYTES} bytes")
    return bytes(data)


def _raise_embedded_error(url: str, response: S3Answer) -> None:
    """S3 may answer a copy or a completion 200 with an ``<Error>`` inside: raise it."""
    if b"<Error>" in response.content[:512]:
        code = _xml_text(response.content, "Code") or "InternalError"
        message = _xml_text(response.content, "Message") or ""
        raise TransferError(url, f"S3 refused it after all: {code}: {message}".rstrip(": "))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child_text(element: ET.Element, name: str) -> str:
    found = _children(element, name)
    return (found[0].text or "") if found else ""


def _xml_text(document: bytes, name: str) -> str | None:
    """The text of the first element called ``name`` (any namespace), None when there is none."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        return None
    for element in root.iter():
        if _local(element.tag) == name:
            return element.text or ""
    return None


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
