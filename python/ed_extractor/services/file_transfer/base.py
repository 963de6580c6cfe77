"""The download contract: the DownloadStrategy protocol, its request and result, content checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from ed_extractor.errors import DeadlineError, TransferError, VerificationError
from ed_extractor.vocabulary import Regime

if TYPE_CHECKING:
    from ed_extractor.hashing import PartSink
    from ed_extractor.services.file_transfer.resume import ResumePoint

#: Connections per file: a number, or ``"auto"`` (several for a large file whose server allows it).
Connections = int | Literal["auto"]


class ProgressReporter(Protocol):
    """Receives progress of one transfer (a terminal bar, or nothing)."""

    def start(self, name: str, total: int | None, already: int = 0) -> None:
        """A transfer of ``total`` bytes (None: unknown) begins, ``already`` of them on disk."""

    def advance(self, count: int) -> None:
        """``count`` more bytes arrived."""

    def stop(self) -> None:
        """The transfer ended, well or not."""


class SilentProgress:
    """A ProgressReporter that reports nothing."""

    def start(self, name: str, total: int | None, already: int = 0) -> None:
        """Ignore the start."""

    def advance(self, count: int) -> None:
        """Ignore the bytes."""

    def stop(self) -> None:
        """Ignore the end."""


@dataclass(frozen=True)
class ContentSummary:
    """What a content check learnt about the whole body."""

    uncompressed_bytes: int | None = None
    records: int | None = None


class ContentCheck(Protocol):
    """Validates a body chunk by chunk while it streams; raises VerificationError when it is bad."""

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk of the body."""

    def finish(self) -> ContentSummary:
        """The body is complete: check its end and return what was learnt."""


class RecordedFile(Protocol):
    """A file already stored and recorded for a source (the manifest's records are such files)."""

    @property
    def name(self) -> str:
        """Its name inside the destination (``SOURCE/PATH`` for a file of a multi-file torrent)."""

    @property
    def path(self) -> str:
        """Where it is stored (absolute)."""

    @property
    def bytes(self) -> int:
        """Its recorded size."""

    @property
    def sha256(self) -> str:
        """Its recorded SHA-256, lower-case hex."""

    @property
    def mime_type(self) -> str:
        """Its sniffed MIME type."""

    @property
    def uncompressed_bytes(self) -> int | None:
        """What its content check counted decompressed, if anything."""

    @property
    def records(self) -> int | None:
        """The JSON records its content check counted, if any."""


@dataclass(frozen=True)
class LandedFile:
    """A file in place under its final name, with the digests of its bytes."""

    path: Path
    bytes: int
    sha256: str
    blake3: str | None


class FileLanding(Protocol):
    """Where one verified part file goes: renamed into a folder, or completed as an object.

    ``follow`` is told the part file's sink when it opens (an object store streams the bytes out
    as they are hashed), ``wait_room`` holds a writer that runs too far ahead of that stream,
    ``land`` ends a verified file, ``abandon`` a failed one (never raises). A landing that keeps
    no local parts may instead continue what a killed run sent (``resume_point``); then it
    ``defers_checks``: ``land`` hashes and checks the whole file itself and says what it found.
    """

    @property
    def keeps_parts(self) -> bool:
        """True when a part file may be kept for a later run to continue (a local folder)."""
        ...

    @property
    def defers_checks(self) -> bool:
        """True when ``land`` (not the sink) hashes and checks the file: a continued upload."""
        ...

    def resume_point(self, url: str, part: Path) -> ResumePoint | None:
        """Where a landing that keeps no parts goes on from (None: from the start)."""
        ...

    def note(self, point: ResumePoint) -> None:
        """The source of the download: URL, validator, length (for a later run to match)."""

    def follow(self, sink: PartSink, part: Path, total: int | None) -> None:
        """The part file ``part`` of a ``total``-byte file (None: unknown) is open on ``sink``."""

    def wait_room(self, end: int, stop: threading.Event) -> bool:
        """Wait until bytes up to ``end`` may be written; False when ``stop`` was set first."""
        ...

    def land(
        self,
        part: Path,
        file: LandedFile,
        *,
        check: ContentCheck | None = None,
        expect: Callable[[str], None] | None = None,
    ) -> tuple[LandedFile, ContentSummary | None]:
        """Put the complete, verified ``part`` in place as ``file`` (StorageError on failure).

        A landing that ``defers_checks`` hashes the file, feeds ``check`` and calls ``expect``
        with the SHA-256 first; it returns what it found (else ``file`` and None).
        """
        ...

    def abandon(self) -> None:
        """The download failed: undo what was started (an upload is aborted). Never raises."""


class Destination(Protocol):
    """Where a run's files land: a local folder, or an object-store prefix (files under a scratch).

    The file of a source always has a local ``final`` path (inside the folder, or the scratch);
    ``location`` is what the manifest and the outcomes call it.
    """

    def landing(self, final: Path, metadata: Mapping[str, str]) -> FileLanding:
        """The landing of the file whose local path is ``final``; ``metadata``: about its source."""
        ...

    def location(self, final: Path) -> str:
        """The stored file's name for people and the manifest: a path, or an ``s3://`` URL."""
        ...

    def holds(self, final: Path, size: int, sha256: str) -> bool:
        """True when the stored file of ``final`` is still there whole (size, and its digest)."""
        ...

    def restore(self, final: Path) -> bool:
        """Bring the stored file of ``final`` back to ``final`` to be continued; False: none.

        A folder's file already is there (False); an object is downloaded (True).
        """
        ...


@dataclass(frozen=True)
class DownloadRequest:
    """One download: where from, where to, and what to check."""

    name: str
    url: str
    final_path: Path
    expected_length: int | None = None
    expected_etag: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    expect_sha256: str | None = None
    blake3: bool = True  # also compute the BLAKE3 of the file, when the sink can
    verify: bool = True
    max_bytes: int | None = None
    deadline: float | None = None  # time.monotonic() after which the transfer stops
    expected_last_modified: str | None = None
    ranges_supported: bool = False  # the probe saw Accept-Ranges: bytes (or a 206)
    connections: Connections = 1
    peers: tuple[str, ...] = ()  # host:port peers to contact (peer-to-peer regimes)
    # The files currently recorded with the given validator (etag): how a regime whose validator
    # names the content (a torrent's info-hash) finds what is already stored.
    recorded_with: Callable[[str], Sequence[RecordedFile]] | None = None
    destination: Destination | None = None  # None: the local folder of ``final_path``

    def source_metadata(self) -> dict[str, str]:
        """What a stored object says of its source: its URL and validators (S3 user metadata)."""
        facts = {
            "source-url": self.url,
            "source-etag": self.expected_etag or "",
            "source-last-modified": self.expected_last_modified or "",
        }
        return {key: value for key, value in facts.items() if value}

    def check_limits(self, size: int) -> None:
        """Stop a body that outgrows ``max_bytes`` or outlives the run's deadline at ``size``."""
        if self.max_bytes is not None and size > self.max_bytes:
            raise TransferError(
                self.url, f"body exceeds max_bytes ({self.max_bytes})", retryable=False
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineError(self.url, f"run deadline reached after {size} bytes")

    def check_sha256(self, digest: str) -> None:
        """Raise VerificationError when ``expect_sha256`` is set and ``digest`` is not it."""
        if self.expect_sha256 is not None and digest != self.expect_sha256.lower():
            raise VerificationError(
                self.url, f"SHA-256 mismatch: expected {self.expect_sha256}, got {digest}"
            )


@dataclass(frozen=True)
class StoredFile:
    """One verified file of a download that stores several (a torrent), one manifest row each."""

    name: str
    path: Path
    bytes: int
    sha256: str
    mime_type: str
    summary: ContentSummary = ContentSummary()
    bytes_transferred: int = 0
    blake3: str | None = None  # when the hashing backend offers BLAKE3


@dataclass(frozen=True)
class DownloadResult:
    """The outcome of a download: a new file in place, or the server said it is unchanged (304)."""

    status: Literal["downloaded", "unchanged"]
    final_url: str
    etag: str | None = None
    last_modified: str | None = None
    path: Path | None = None
    bytes: int = 0
    sha256: str | None = None
    blake3: str | None = None
    bytes_transferred: int = 0
    summary: ContentSummary = ContentSummary()
    files: tuple[StoredFile, ...] = ()  # set by regimes that store files under their own names


class DownloadStrategy(Protocol):
    """One download's regime: its source (how bytes arrive) and content check (what they must be).

    ``name``: the regime the manifest records (the content's, ``s3-multipart``, ``bittorrent``).
    """

    @property
    def name(self) -> Regime:
        """The regime the manifest records."""
        ...

    def download(
        self, client: httpx.Client, request: DownloadRequest, progress: ProgressReporter
    ) -> DownloadResult:
        """Fetch ``request.url`` into ``request.final_path`` atomically; say what was stored."""
        ...
