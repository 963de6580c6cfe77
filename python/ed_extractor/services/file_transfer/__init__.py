"""Move a source's bytes to disk: the download contract (``base``), the range engine, the landing.

``context`` (DownloadContext) is imported where it is used: it brings the content checks' libraries.
"""

from ed_extractor.services.file_transfer.base import (
    Connections,
    DownloadRequest,
    DownloadResult,
    DownloadStrategy,
    ProgressReporter,
)

__all__ = [
    "Connections",
    "DownloadRequest",
    "DownloadResult",
    "DownloadStrategy",
    "ProgressReporter",
]
