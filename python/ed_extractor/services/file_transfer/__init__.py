"""Move a source's bytes to disk: the DownloadStrategy contract, regimes and DownloadContext."""

from ed_extractor.services.file_transfer.base import (
    Connections,
    DownloadRequest,
    DownloadResult,
    DownloadStrategy,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.context import DownloadContext

__all__ = [
    "Connections",
    "DownloadContext",
    "DownloadRequest",
    "DownloadResult",
    "DownloadStrategy",
    "ProgressReporter",
]
