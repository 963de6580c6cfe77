"""What the manifest records: each source's current file (ManifestRecord), attempts, re-checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ed_extractor.errors import InvalidURLError
from ed_extractor.services.s3.location import is_s3_url, parse_s3_url
from ed_extractor.vocabulary import ContentRegime as ContentRegime
from ed_extractor.vocabulary import Regime as Regime
from ed_extractor.vocabulary import normalize_sha256

AttemptStatus = Literal["downloaded", "unchanged", "failed"]
"""What happened to a source in one attempt (also the ``status`` of ``fetch --json``)."""
VerificationStatus = Literal["ok", "mismatch", "missing", "size-mismatch"]
"""What ``verify`` found of one recorded file."""
HashAlgorithm = Literal["blake3", "sha256"]

Sha256Hex = Annotated[str, AfterValidator(normalize_sha256)]
"""A SHA-256 hex digest, lower-cased: the one check of every digest the program takes in."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class ManifestRecord(BaseModel):
    """The verified file currently stored for one source, keyed by its file name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="file name inside dest; the primary key")
    url: str = Field(description="the URL as requested")
    final_url: str = Field(description="the URL after redirects")
    path: str = Field(description="absolute path of the final file, or its s3://BUCKET/KEY")
    bytes: int = Field(ge=0, description="size of the stored file")
    sha256: Sha256Hex = Field(description="lower-case hex SHA-256 of the file")
    blake3: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="lower-case hex BLAKE3, when computed"
    )
    regime: Regime
    mime_type: str
    etag: str | None = None
    last_modified: str | None = Field(default=None, description="Last-Modified as sent")
    uncompressed_bytes: int | None = Field(default=None, ge=0)
    records: int | None = Field(default=None, ge=0, description="JSON records, when counted")
    downloaded_at: UtcDatetime = Field(description="when the download completed (UTC)")
    coverage_s: float | None = Field(
        default=None, ge=0, le=3600, description="EDDN merged hour: seconds some replica received"
    )

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if is_s3_url(value):
            try:
                parse_s3_url(value)
            except InvalidURLError as exc:
                raise ValueError(str(exc)) from None
            return value
        if not Path(value).is_absolute():
            raise ValueError(f"path must be absolute, got {value!r}")
        return value


class AttemptRecord(BaseModel):
    """One row of a source's history: a download, an unchanged check or a failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    name: str
    url: str
    status: AttemptStatus
    error: str | None = None
    bytes_transferred: int = Field(ge=0)
    elapsed_s: float = Field(ge=0)
    at: UtcDatetime = Field(description="when the attempt ended (UTC)")


class VerificationRecord(BaseModel):
    """One re-check of a stored file against its record (``verify --record``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    name: str
    status: VerificationStatus
    algo: HashAlgorithm
    bytes: int = Field(ge=0, description="size found on disk (0 when missing)")
    elapsed_s: float = Field(ge=0)
    at: UtcDatetime = Field(description="when the check ended (UTC)")
