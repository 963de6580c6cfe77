"""ZstdRegime: every zstd frame decompressed to nowhere while it streams (checksums, ends)."""

from __future__ import annotations

from typing import ClassVar

import zstandard

from ed_extractor.errors import VerificationError
from ed_extractor.manifest.models import Regime
from ed_extractor.services.file_transfer.base import ContentSummary, DownloadRequest
from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime


class ZstdCheck:
    """Decompresses each zstd frame, discarding the output; the library checks frame checksums."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame = self._decompressor.decompressobj()
        self._frame_done = False
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Decompress the next chunk, starting new frames as they come."""
        data = chunk
        while data:
            if self._frame_done:
                self._frame = self._decompressor.decompressobj()
                self._frame_done = False
            try:
                self._size += len(self._frame.decompress(data))
            except zstandard.ZstdError as exc:
                raise VerificationError(self._url, f"corrupt zstd stream: {exc}") from exc
            if self._frame.eof:
                self._frame_done = True
                data = self._frame.unused_data
            else:
                data = b""

    def finish(self) -> ContentSummary:
        """Fail unless the last frame is complete; report the uncompressed size."""
        if not self._frame_done:
            raise VerificationError(self._url, "truncated zstd stream (last frame incomplete)")
        return ContentSummary(uncompressed_bytes=self._size)


class ZstdRegime(BinaryRegime):
    """Zstandard: stored compressed as served, verified frame by frame."""

    name: ClassVar[Regime] = "zstd"

    def content_check(self, request: DownloadRequest) -> ZstdCheck:
        """A zstd frame check for this request's URL."""
        return ZstdCheck(request.url)
