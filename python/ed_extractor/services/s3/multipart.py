"""MultipartUploads: the multipart-upload requests of a Bucket, part bodies streamed from a file."""

from __future__ import annotations

import base64
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import quote

import httpx

from ed_extractor.errors import TransferError
from ed_extractor.services.s3.access import s3_error
from ed_extractor.services.s3.bucket import Body, Bucket, metadata_headers

#: Bytes read from a part file per step while a part streams out (and its CRC is computed).
READ_STEP: Final = 1 << 20
#: The largest object one CopyObject copies (S3's limit is 5 GiB), and the ranges of a larger one.
COPY_LIMIT: Final = 5 << 30
COPY_PART: Final = 1 << 30
CONTENT_TYPE: Final = "application/octet-stream"
#: The most bytes of an S3 answer (XML) read into memory.
MAX_ANSWER_BYTES: Final = 4 << 20


def crc64nvme(data: bytes, previous: int = 0) -> int:
    """CRC-64/NVME (awscrt's, with CLMUL), continued from ``previous``."""
    from awscrt import checksums

    return int(checksums.crc64nvme(data, previous))


def encode_crc64(value: int) -> str:
    """S3's form of a CRC-64: the 8 big-endian bytes in base64."""
    return base64.b64encode(value.to_bytes(8, "big")).decode("ascii")


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

    def crcs(self, running_crc: int = 0) -> tuple[int, int]:
        """The region's CRC-64/NVME, and ``running_crc`` continued over it (one read)."""
        crc, running = 0, running_crc
        for data in self.chunks():
            crc = crc64nvme(data, crc)
            running = crc64nvme(data, running)
        return crc, running

    def md5(self) -> bytes:
        """The region's MD5 (a read of its own: some 1.2 CPU seconds a GiB; only when needed)."""
        digest = hashlib.md5(usedforsecurity=False)
        for data in self.chunks():
            digest.update(data)
        return digest.digest()


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload the bucket holds that was never completed or aborted."""

    key: str
    upload_id: str
    initiated: datetime


class MultipartUploads:
    """The multipart-upload requests, and the PUT and self-copy of an object, on ``bucket``.

    Every error answer is raised as a TransferError (an S3Error when S3 names its code).
    """

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    def url(self, key: str) -> str:
        """The ``s3://`` URL of ``key``."""
        return self.bucket.url(key)

    def _call(
        self,
        method: str,
        key: str,
        *,
        query: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        content: Body = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """One signed request about ``key`` (``""``: the bucket); a status outside ``ok`` raises."""
        response = self.bucket.send(method, key, f"S3 {method}", query=query, headers=headers,
                                    content=content)  # fmt: skip
        if len(response.content) > MAX_ANSWER_BYTES:
            raise TransferError(self.url(key), f"S3 answered more than {MAX_ANSWER_BYTES} bytes")
        if response.status_code not in ok:
            raise s3_error(self.url(key), response, f"S3 {method}", response.content)
        return response

    def put_region(
        self, key: str, region: FileRegion, metadata: Mapping[str, str], content_type: str
    ) -> str:
        """PUT ``region`` as the whole object ``key`` (checked by its MD5 and CRC); its ETag."""
        headers = {
            **metadata_headers(metadata),
            "Content-Type": content_type,
            "Content-Length": str(region.length),
            "Content-MD5": base64.b64encode(region.md5()).decode("ascii"),
            "x-amz-checksum-crc64nvme": encode_crc64(region.crcs()[0]),
        }
        response = self._call("PUT", key, headers=headers, content=region.chunks())
        return str(response.headers.get("ETag", ""))

    def create_upload(
        self, key: str, metadata: Mapping[str, str], content_type: str, *, crc64: bool
    ) -> str:
        """Start a multipart upload of ``key``; its id. ``crc64``: a full-object CRC-64/NVME."""
        headers = {**metadata_headers(metadata), "Content-Type": content_type}
        if crc64:
            headers["x-amz-checksum-algorithm"] = "CRC64NVME"
            headers["x-amz-checksum-type"] = "FULL_OBJECT"
        answer = self._call("POST", key, query={"uploads": ""}, headers=headers)
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
        answer = self._call("PUT", key, query=query, headers=headers, content=region.chunks())
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
        answer = self._call("POST", key, query={"uploadId": upload_id}, headers=headers,
                            content=document)  # fmt: skip
        _raise_embedded_error(self.url(key), answer)
        etag = _xml_text(answer.content, "ETag") or answer.headers.get("ETag", "")
        crc = _xml_text(answer.content, "ChecksumCRC64NVME") or answer.headers.get(
            "x-amz-checksum-crc64nvme"
        )
        return etag, crc

    def held_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        """The parts the store holds for the upload: number -> (size, ETag); every page."""
        held: dict[int, tuple[int, str]] = {}
        query: dict[str, str | int] = {"uploadId": upload_id}
        while True:
            answer = self._call("GET", key, query=query)
            root = ET.fromstring(answer.content)
            for part in root.iterfind("{*}Part"):
                number = int(part.findtext("{*}PartNumber", "0"))
                held[number] = (int(part.findtext("{*}Size", "0")), part.findtext("{*}ETag", ""))
            if root.findtext("{*}IsTruncated", "").lower() != "true":
                return held
            query = {**query, "part-number-marker": root.findtext("{*}NextPartNumberMarker", "")}

    def copy_object(
        self, source: str, target: str, *, etag: str, size: int, metadata: Mapping[str, str]
    ) -> str:
        """Copy the object ``source`` (still version ``etag``) to ``target`` with ``metadata``.

        The bytes move inside the store. Up to COPY_LIMIT it is one CopyObject; a larger object
        is copied in COPY_PART ranges of a multipart upload (S3 copies at most 5 GiB at once).
        Its ETag.
        """
        copied_from = {
            "x-amz-copy-source": quote(f"/{self.bucket.name}/{source}"),
            "x-amz-copy-source-if-match": etag,
        }
        if size <= COPY_LIMIT:
            headers = {**metadata_headers(metadata), **copied_from,
                       "x-amz-metadata-directive": "REPLACE"}  # fmt: skip
            answer = self._call("PUT", target, headers=headers)
            _raise_embedded_error(self.url(target), answer)
            return _xml_text(answer.content, "ETag") or str(answer.headers.get("ETag", ""))
        upload_id = self.create_upload(target, metadata, CONTENT_TYPE, crc64=False)
        try:
            parts = []
            for number, start in enumerate(range(0, size, COPY_PART), start=1):
                end = min(start + COPY_PART, size) - 1
                query: dict[str, str | int] = {"partNumber": number, "uploadId": upload_id}
                headers = {**copied_from, "x-amz-copy-source-range": f"bytes={start}-{end}"}
                answer = self._call("PUT", target, query=query, headers=headers)
                _raise_embedded_error(self.url(target), answer)
                parts.append((number, _xml_text(answer.content, "ETag") or ""))
            copied, _ = self.complete_upload(target, upload_id, parts, None)
        except BaseException:
            self.abort_upload(target, upload_id)
            raise
        return copied

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort the upload: its parts are dropped (no error when it is already gone)."""
        self._call("DELETE", key, query={"uploadId": upload_id}, ok=(200, 204, 404))

    def pending_uploads(self, prefix: str) -> list[PendingUpload]:
        """The multipart uploads in progress under ``prefix`` (every page)."""
        found: list[PendingUpload] = []
        query: dict[str, str | int] = {"uploads": "", "prefix": prefix}
        while True:
            answer = self._call("GET", "", query=query)
            root = ET.fromstring(answer.content)
            for upload in root.iterfind("{*}Upload"):
                initiated = upload.findtext("{*}Initiated", "")
                found.append(
                    PendingUpload(
                        upload.findtext("{*}Key", ""),
                        upload.findtext("{*}UploadId", ""),
                        datetime.fromisoformat(initiated.replace("Z", "+00:00")),
                    )
                )
            if root.findtext("{*}IsTruncated", "").lower() != "true":
                return found
            query = {
                **query,
                "key-marker": root.findtext("{*}NextKeyMarker", ""),
                "upload-id-marker": root.findtext("{*}NextUploadIdMarker", ""),
            }


def _raise_embedded_error(url: str, response: httpx.Response) -> None:
    """S3 may answer a copy or a completion 200 with an ``<Error>`` inside: raise it."""
    if b"<Error>" in response.content[:512]:
        code = _xml_text(response.content, "Code") or "InternalError"
        message = _xml_text(response.content, "Message") or ""
        raise TransferError(url, f"S3 refused it after all: {code}: {message}".rstrip(": "))


def _xml_text(document: bytes, name: str) -> str | None:
    """The text of the first element below the root called ``name`` (any namespace), or None."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        return None
    return root.findtext(f".//{{*}}{name}")


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
