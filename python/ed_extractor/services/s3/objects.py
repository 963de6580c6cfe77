"""S3Object: what one version of an object is (size, validators, part layout, checksums)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

CHECKSUM_HEADERS: Final = {
    "crc64nvme": "x-amz-checksum-crc64nvme",
    "crc32": "x-amz-checksum-crc32",
    "crc32c": "x-amz-checksum-crc32c",
}
"""The whole-object checksums S3 reports (HEAD with ``x-amz-checksum-mode: ENABLED``), by name."""
#: The header that carries a request body's SHA-256 (or UNSIGNED-PAYLOAD), which SigV4 signs.
PAYLOAD_HASH: Final = "x-amz-content-sha256"
_MULTIPART_ETAG: Final = re.compile(r'^"?([0-9a-fA-F]{32})-([0-9]+)"?$')
_PLAIN_ETAG: Final = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


@dataclass(frozen=True)
class S3Object:
    """One version of an object: size, validators, part layout and full-object checksums."""

    url: str
    http_url: str
    size: int
    etag: str
    last_modified: str | None
    parts: int = 1  # the upload's part count (1: a single PUT, or not asked for yet)
    part_size: int = 0  # size of every part but the last; 0 for a single-part object
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> base64, whole object
    encrypted: bool = False  # SSE-KMS or SSE-C: the ETag is not an MD5

    @property
    def multipart(self) -> bool:
        """True when the object was uploaded in parts (its ETag ends in ``-N``)."""
        return _MULTIPART_ETAG.match(self.etag) is not None

    def part_md5s_digest(self) -> str | None:
        """The hex MD5 of the concatenated part MD5s the ETag carries, when it is an MD5 at all."""
        match = _MULTIPART_ETAG.match(self.etag)
        return match.group(1).lower() if match and not self.encrypted else None

    def object_md5(self) -> str | None:
        """The hex MD5 of the whole object a single-part ETag is, when it is an MD5 at all."""
        match = _PLAIN_ETAG.match(self.etag)
        return match.group(1).lower() if match and not self.encrypted else None

    def part_number(self, first: int, end: int) -> int | None:
        """The number of the uploaded part that is exactly ``[first, end)``, if one is."""
        if self.parts <= 1 or self.part_size <= 0 or first % self.part_size:
            return None
        number = first // self.part_size + 1
        return number if end == min(first + self.part_size, self.size) else None

    def part_ranges(self) -> list[tuple[int, int]]:
        """``(start, length)`` of each uploaded part, in order (all but the last of part_size)."""
        if self.parts <= 1 or self.part_size <= 0:
            return [(0, self.size)]
        starts = range(0, self.size, self.part_size)
        return [(start, min(self.part_size, self.size - start)) for start in starts]
