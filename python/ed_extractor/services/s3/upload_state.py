"""UploadState: what a killed run's upload needs to go on, kept as an object beside the records.

``PREFIX/_manifest/uploads/<name>.json`` names the upload (its id and staging key), the source it
copies (URL, validator, length) and every part sent in file order with the CRC-64/NVME of the
file up to its end; it is rewritten after each part and removed when the file lands or fails.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from ed_extractor.errors import TransferError
from ed_extractor.services.s3.bucket import Bucket

log = logging.getLogger(__name__)

STATE_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class SentPart:
    """One part the store holds: number, bytes ``[start, start + size)``, ETag, MD5 (hex).

    ``crc_after``: the CRC-64/NVME of the file from its first byte to the part's end.
    """

    number: int
    start: int
    size: int
    etag: str
    md5: str
    crc_after: int

    @property
    def end(self) -> int:
        """The first byte after the part."""
        return self.start + self.size


@dataclass(frozen=True)
class UploadState:
    """An upload in progress: where it goes, what it copies, which parts are sent."""

    url: str
    validator: str
    total: int
    upload_id: str
    staging_key: str
    crc64: bool
    parts: tuple[SentPart, ...] = field(default_factory=tuple)

    @property
    def offset(self) -> int:
        """The first byte not covered by the parts sent in order from the first."""
        return self.parts[-1].end if self.parts else 0

    def to_json(self) -> bytes:
        """The state as the JSON object stored."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadState:
        """The state stored as ``data``; ValueError when it is not one."""
        raw: dict[str, Any] = json.loads(data)
        parts = tuple(SentPart(**part) for part in raw.pop("parts", []))
        state = cls(**raw, parts=parts)
        expected = 0
        for number, part in enumerate(state.parts, start=1):
            if part.number != number or part.start != expected or part.size <= 0:
                raise ValueError(f"part {part.number} does not follow the parts before it")
            expected = part.end
        return state


class UploadStates:
    """The upload states of one destination, under ``<prefix>_manifest/uploads/``."""

    def __init__(self, bucket: Bucket, manifest_prefix: str) -> None:
        self._bucket = bucket
        self._prefix = f"{manifest_prefix}uploads/"

    def key(self, name: str) -> str:
        """The state object of the file ``name``."""
        return f"{self._prefix}{name}.json"

    def load(self, name: str) -> UploadState | None:
        """The state of ``name``'s upload (one GET), None when there is none or it is unusable."""
        try:
            return UploadState.from_json(self._bucket.get(self.key(name)))
        except TransferError as exc:
            if exc.status_code == 404:
                return None  # no upload was left: the usual case
            problem = str(exc)
        except (ValueError, TypeError) as exc:
            problem = str(exc)
        where = self._bucket.url(self.key(name))
        log.warning("unusable upload state; starting over",
                    extra={"state": where, "error": problem})  # fmt: skip
        return None

    def save(self, name: str, state: UploadState) -> None:
        """Store ``state`` (replacing the one before)."""
        self._bucket.put(self.key(name), state.to_json(), content_type=STATE_CONTENT_TYPE)

    def delete(self, name: str) -> None:
        """Remove ``name``'s state; never raises (a stale one is checked before it is used)."""
        try:
            self._bucket.delete(self.key(name))
        except TransferError as exc:
            log.warning("cannot remove an upload state", extra={"error": str(exc)})
