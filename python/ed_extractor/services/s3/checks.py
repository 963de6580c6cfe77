"""S3ObjectCheck: the object's own checksums verified in file order (part MD5s, ETag, full CRCs)."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Final

from ed_extractor.errors import VerificationError
from ed_extractor.services.file_transfer.base import ContentCheck, ContentSummary
from ed_extractor.services.s3.objects import S3Object

Crc = Callable[[bytes, int], int]


def _crc64nvme(data: bytes, previous: int) -> int:
    from awscrt import checksums

    return checksums.crc64nvme(data, previous)


def _crc32c(data: bytes, previous: int) -> int:
    from awscrt import checksums

    return checksums.crc32c(data, previous)


CRCS: Final[dict[str, tuple[Crc, int]]] = {  # algorithm -> (update function, width in bytes)
    "crc64nvme": (_crc64nvme, 8),
    "crc32": (zlib.crc32, 4),
    "crc32c": (_crc32c, 4),
}


def encode_crc(value: int, width: int) -> str:
    """S3's form of a CRC: the big-endian bytes in base64."""
    return base64.b64encode(value.to_bytes(width, "big")).decode("ascii")


class S3ObjectCheck:
    """Follows the object's bytes in order; ``finish`` compares what S3 says it stored.

    A multipart ETag ``<md5 of the part MD5s>-N`` is checked by hashing each part as it streams
    and then the concatenated part MD5s; a plain ETag is the object's MD5; a full-object CRC
    header is checked. Under SSE-KMS
    and SSE-C the ETag is opaque and only the CRCs are checked.
    """

    def __init__(self, obj: S3Object) -> None:
        self._obj = obj
        self._boundaries = [start + length for start, length in obj.part_ranges()]
        self._want_md5 = obj.part_md5s_digest() is not None or obj.object_md5() is not None
        self._part_md5s: list[bytes] = []
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._crcs = {name: 0 for name in obj.checksums if name in CRCS}
        self._offset = 0

    def feed(self, chunk: bytes) -> None:
        """Account for the next bytes of the object."""
        for name, value in self._crcs.items():
            self._crcs[name] = CRCS[name][0](chunk, value)
        if not self._want_md5:
            self._offset += len(chunk)
            return
        view = memoryview(chunk)
        while view:
            end = self._part_end()
            take = len(view) if end is None else min(len(view), end - self._offset)
            self._md5.update(view[:take])
            self._offset += take
            view = view[take:]
            self._close_part()

    def _part_end(self) -> int | None:
        index = len(self._part_md5s)
        return self._boundaries[index] if index < len(self._boundaries) else None

    def _close_part(self) -> None:
        """Keep the current part's MD5 once its last byte has been fed."""
        if self._offset == self._part_end():
            self._part_md5s.append(self._md5.digest())
            self._md5 = hashlib.md5(usedforsecurity=False)

    def finish(self) -> ContentSummary:
        """Raise VerificationError unless every checksum S3 gave matches the bytes."""
        obj = self._obj
        if self._want_md5:
            self._close_part()  # an empty object has one empty part
        for name, value in self._crcs.items():
            got = encode_crc(value, CRCS[name][1])
            if got != obj.checksums[name]:
                raise VerificationError(
                    obj.url, f"{name.upper()} mismatch: S3 says {obj.checksums[name]}, got {got}"
                )
        single = obj.object_md5()
        if single is not None and self._part_md5s and self._part_md5s[0].hex() != single:
            raise VerificationError(
                obj.url, f"MD5 mismatch: the ETag says {single}, got {self._part_md5s[0].hex()}"
            )
        if obj.part_md5s_digest() is not None:
            self._check_parts()
        return ContentSummary()

    def _check_parts(self) -> None:
        obj = self._obj
        digest = hashlib.md5(b"".join(self._part_md5s), usedforsecurity=False).hexdigest()
        got = f"{digest}-{len(self._part_md5s)}"
        if got == obj.etag.strip('"').lower():
            return
        raise VerificationError(
            obj.url,
            f"multipart ETag mismatch: {obj.etag} is not the MD5 of the part MD5s and their "
            f"count ({got})",
        )


class CombinedCheck:
    """Several ContentChecks fed the same chunks; the summary of the first one counts."""

    def __init__(self, checks: list[ContentCheck]) -> None:
        self._checks = checks

    def feed(self, chunk: bytes) -> None:
        """Feed every check."""
        for check in self._checks:
            check.feed(chunk)

    def finish(self) -> ContentSummary:
        """Finish every check; the first one's summary (the content check's) is returned."""
        summaries = [check.finish() for check in self._checks]
        return summaries[0] if summaries else ContentSummary()
