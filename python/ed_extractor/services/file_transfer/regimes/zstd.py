"""ZstdRegime: every zstd frame decompressed to nowhere as it streams (checksums, ends, records)."""

from __future__ import annotations

import sys
from typing import ClassVar, Final

from ed_extractor.services.file_transfer.base import DownloadRequest
from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.services.file_transfer.regimes.compressed import (
    MAX_OUTPUT,
    CompressedCheck,
    PythonVerifier,
    StreamVerifier,
    verifier_for_backend,
)
from ed_extractor.vocabulary import Regime

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = ["PythonZstdVerifier", "ZstdCheck", "ZstdRegime", "new_verifier", "zstd"]


class PythonZstdVerifier(PythonVerifier):
    """The ZstdVerifier of the pure-Python backend: ``compression.zstd``, one frame at a time."""

    compression: ClassVar[str] = "zstd"
    truncated: ClassVar[str] = "truncated zstd stream (last frame incomplete)"
    library_error: ClassVar[type[Exception]] = zstd.ZstdError

    def __init__(self) -> None:
        super().__init__()
        self._frame = zstd.ZstdDecompressor()
        self._frame_done = False

    def decompress(self, data: Buffer) -> None:
        """Decompress ``data`` in bounded steps, starting new frames as they come."""
        while data:
            if self._frame_done:
                self._frame = zstd.ZstdDecompressor()
                self._frame_done = False
            text = self._frame.decompress(data, MAX_OUTPUT)
            self.shape.feed(text)
            # The frame holds more output than one step returned: take it before more input.
            while text and not (self._frame.needs_input or self._frame.eof):
                text = self._frame.decompress(b"", MAX_OUTPUT)
                self.shape.feed(text)
            if self._frame.eof:
                self._frame_done = True
                data = self._frame.unused_data
            else:
                data = b""

    def is_complete(self) -> bool:
        """True when the last frame ended (its checksum checked if it has one)."""
        return self._frame_done


new_verifier: Final = verifier_for_backend("ZstdVerifier", PythonZstdVerifier)


class ZstdCheck(CompressedCheck):
    """Decompresses every zstd frame, discarding the output; frame checksums are checked."""

    def __init__(self, url: str, verifier: StreamVerifier | None = None) -> None:
        super().__init__(url, verifier if verifier is not None else new_verifier())


class ZstdRegime(BinaryRegime):
    """Zstandard: stored compressed as served, verified frame by frame, records counted."""

    name: ClassVar[Regime] = "zstd"

    def content_check(self, request: DownloadRequest) -> ZstdCheck:
        """A zstd frame check for this request's URL."""
        return ZstdCheck(request.url)
