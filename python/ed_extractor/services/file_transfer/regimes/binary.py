"""BinaryRegime: bytes stored as they come, checked only for length and (optionally) SHA-256."""

from __future__ import annotations

from typing import ClassVar

import httpx

from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.transfer import transfer
from ed_extractor.vocabulary import Regime


class BinaryRegime:
    """Any content: stream, count, hash, rename. Subclasses add a content check."""

    name: ClassVar[Regime] = "binary"

    def content_check(self, request: DownloadRequest) -> ContentCheck | None:
        """The check run on the body while it streams; none for opaque bytes."""
        return None

    def download(
        self, client: httpx.Client, request: DownloadRequest, progress: ProgressReporter
    ) -> DownloadResult:
        """Fetch the body into place, running this regime's content check unless verify is off."""
        check = self.content_check(request) if request.verify else None
        return transfer(client, request, check, progress)
