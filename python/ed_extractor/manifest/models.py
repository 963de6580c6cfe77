"""What the manifest records: the current file of each source (ManifestRecord) and every attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Regime = Literal["gzip", "json", "zstd", "binary", "bittorrent"]
AttemptStatus = Literal["downloaded", "unchanged", "failed"]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class ManifestRecord(BaseModel):
    """The verified file currently stored for one source, keyed by its file name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="file name inside dest; the primary key")
    url: str = Field(description="the URL as requested")
    final_url: str = Field(description="the URL after redirects")
    path: str = Field(description="absolute path of the final file")
    bytes: int = Field(ge=0, description="size of the stored file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256 of the file")
    regime: Regime
    mime_type: str
    etag: str | None = None
    last_modified: str | None = Field(default=None, description="Last-Modified as sent")
    uncompressed_bytes: int | None = Field(default=None, ge=0)
    records: int | None = Field(default=None, ge=0, description="JSON records, when counted")
    downloaded_at: AwareDatetime = Field(description="when the download completed (UTC)")

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError(f"path must be absolute, got {value!r}")
        return value

    @field_validator("downloaded_at")
    @classmethod
    def _downloaded_at_utc(cls, value: datetime) -> datetime:
        return _to_utc(value)


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
    at: AwareDatetime = Field(description="when the attempt ended (UTC)")

    @field_validator("at")
    @classmethod
    def _at_utc(cls, value: datetime) -> datetime:
        return _to_utc(value)
