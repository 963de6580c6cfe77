"""The exception hierarchy of ed-extractor: every error the program raises on purpose.

EdExtractorError
 ├── UsageError              bad command line or configuration (exit code 2)
 │    ├── InvalidURLError     not an absolute http(s) or s3:// URL, nor a magnet: link
 │    ├── ConfigError         unreadable or invalid TOML / settings
 │    └── DestinationError    an object-store destination that cannot be used (no bucket, denied)
 ├── SourceError             one source failed (exit code 1); carries ``url``
 │    ├── ProbeError          the probe could not establish what the source is
 │    ├── UnexpectedContentError  the body is not what the URL or config expects
 │    ├── TransferError       the HTTP exchange failed (status, connection, timeout)
 │    │    ├── IncompleteBodyError  fewer or more bytes than announced
 │    │    ├── ProtocolError  a malformed header or a Content-Range that does not fit
 │    │    └── DeadlineError  the run's deadline passed (the part file is kept)
 │    └── VerificationError   the bytes arrived but fail a check (gzip CRC, JSON, SHA-256)
 ├── StorageError            the file system refused (disk full, permissions); carries ``path``
 ├── ManifestError           the manifest database is unreadable or newer than this program
 └── LockError               another run holds the destination's lock
"""

from __future__ import annotations

from pathlib import Path


class EdExtractorError(Exception):
    """Base class of every error ed-extractor raises on purpose."""


class UsageError(EdExtractorError):
    """The command line or the configuration is wrong; the program exits with code 2."""


class InvalidURLError(UsageError):
    """A URL is malformed or uses a scheme other than http, https, s3 and magnet."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid URL {url!r}: {reason}")
        self.url = url


class ConfigError(UsageError):
    """A configuration file or setting is invalid."""


class DestinationError(UsageError):
    """The object-store destination cannot be used: its bucket is missing or access is denied."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{reason} ({url})")
        self.url = url


class SourceError(EdExtractorError):
    """One source could not be fetched; other sources carry on."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{message} ({url})")
        self.url = url
        self.message = message


class ProbeError(SourceError):
    """The probe could not establish what the source is."""


class UnexpectedContentError(SourceError):
    """The body is not of the type the URL's extension or the configuration expects."""


class TransferError(SourceError):
    """The HTTP exchange failed: an error status, a connection error or a timeout.

    ``retryable`` says whether trying again may help: connection errors, timeouts, bodies cut
    short, 408, 429 and 5xx may; other 4xx and malformed responses may not. ``retry_after`` is the
    server's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self,
        url: str,
        message: str,
        *,
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(url, message)
        self.status_code = status_code
        if retryable is None:
            retryable = status_code is None or status_code in (408, 429) or status_code >= 500
        self.retryable = retryable
        self.retry_after = retry_after


class IncompleteBodyError(TransferError):
    """The body was shorter or longer than the server announced."""


class ProtocolError(TransferError):
    """The response breaks HTTP's rules: a malformed header, a Content-Range that does not fit."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(url, message, retryable=False)


class DeadlineError(TransferError):
    """The run's deadline passed; what has arrived is kept for the next run to resume."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(url, message, retryable=False)


class VerificationError(SourceError):
    """The bytes arrived but failed a check: gzip/zstd frame, JSON document or SHA-256."""


class StorageError(EdExtractorError):
    """The local file system refused an operation (disk full, permission denied, ...)."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{message}: {path}")
        self.path = Path(path)
        self.message = message


class ManifestError(EdExtractorError):
    """The manifest database cannot be read or written."""


class LockError(EdExtractorError):
    """Another run holds the destination's lock."""
