"""Manifest: what the pipeline asks of a manifest, whether SQLite beside a folder or in a bucket."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from ed_extractor.manifest.models import (
    AttemptRecord,
    AttemptStatus,
    HashAlgorithm,
    ManifestRecord,
    VerificationRecord,
    VerificationStatus,
)


class Manifest(Protocol):
    """The records of one destination: each file's current record, its attempts and re-checks.

    ``ManifestStore`` (SQLite) and ``ObjectManifestStore`` (objects under
    ``PREFIX/_manifest/``) implement it; their methods may be called from several threads.
    """

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None:
        """Release what the store holds; closing twice is harmless."""

    def get(self, name: str) -> ManifestRecord | None:
        """The current record of ``name``, or None if it was never stored."""

    def with_etag(self, etag: str) -> list[ManifestRecord]:
        """The current records whose validator is ``etag``, ordered by name."""

    def records(self) -> list[ManifestRecord]:
        """Every current record, ordered by name."""

    def put(self, record: ManifestRecord, *, elapsed_s: float, bytes_transferred: int) -> None:
        """Make ``record`` its name's current record and log a "downloaded" attempt."""

    def record_attempt(
        self,
        name: str,
        url: str,
        status: AttemptStatus,
        *,
        error: str | None = None,
        elapsed_s: float,
        bytes_transferred: int = 0,
    ) -> None:
        """Append one attempt to the history without touching the current record."""

    def history(self, name: str | None = None, *, limit: int | None = 100) -> list[AttemptRecord]:
        """Attempts, newest first: all, or only ``name``'s; at most ``limit`` (None: all)."""

    def record_verification(
        self,
        name: str,
        status: VerificationStatus,
        algo: HashAlgorithm,
        *,
        bytes_found: int,
        elapsed_s: float,
    ) -> None:
        """Append one re-check of ``name``'s file; the current record is left as it is."""

    def verifications(
        self, name: str | None = None, *, limit: int | None = 100
    ) -> list[VerificationRecord]:
        """Re-checks, newest first: all, or only ``name``'s; at most ``limit`` (None: all)."""
