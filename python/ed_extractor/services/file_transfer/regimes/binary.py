"""BinaryRegime: bytes stored as they come, checked only for length and (optionally) SHA-256."""

from __future__ import annotations

from typing import ClassVar

from ed_extractor.services.file_transfer.base import ContentCheck, DownloadRequest
from ed_extractor.vocabulary import Regime


class BinaryRegime:
    """Any content: no check of what the bytes are. Subclasses add a content check."""

    name: ClassVar[Regime] = "binary"

    def content_check(self, request: DownloadRequest) -> ContentCheck | None:
        """The check run on the body while it streams; none for opaque bytes."""
        return None
