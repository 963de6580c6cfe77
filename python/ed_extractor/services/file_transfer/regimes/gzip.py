"""GzipRegime: gzip inflated to nowhere as it streams (CRC, length, JSON shape): native or ISA-L."""

from __future__ import annotations

import sys
from typing import ClassVar, Final, cast

from isal import isal_zlib as zlib  # ISA-L: zlib-compatible, inflates about 3x faster

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

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

_GZIP_WBITS = 16 + zlib.MAX_WBITS
# A member's FLG byte: RFC 1952 has a decoder refuse the three reserved bits, as zlib does and
# ISA-L does not.
_FLG_OFFSET = 3
_FLG_RESERVED = 0xE0
# isal's stubs declare its error as an instance; at run time it is an exception class.
_INFLATE_ERROR = cast(type[Exception], zlib.error)

GzipVerifier = StreamVerifier
"""``_native.GzipVerifier``'s API: every member inflated, CRC-32 and length checked."""


class IsalGzipVerifier(PythonVerifier):
    """The GzipVerifier of the pure-Python backend: ISA-L inflates, ``JsonShape`` follows."""

    compression: ClassVar[str] = "gzip"
    truncated: ClassVar[str] = "truncated gzip stream (no complete trailer)"
    # isal's stubs declare its error as an instance; at run time it is an exception class.
    library_error: ClassVar[type[Exception]] = _INFLATE_ERROR

    def __init__(self) -> None:
        super().__init__()
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._member_done = False
        self._member_input = 0  # bytes handed to the current member's inflater so far

    def decompress(self, data: Buffer) -> None:
        """Inflate ``data``, starting new members as they come."""
        while data:
            if self._member_done:
                self._inflater = zlib.decompressobj(_GZIP_WBITS)
                self._member_done = False
                self._member_input = 0
            self._check_flags(data)
            self.shape.feed(self._inflater.decompress(data, MAX_OUTPUT))
            while self._inflater.unconsumed_tail:
                tail = self._inflater.unconsumed_tail
                self.shape.feed(self._inflater.decompress(tail, MAX_OUTPUT))
            if self._inflater.eof:
                self._member_done = True
                data = self._inflater.unused_data
            else:
                data = b""

    def _check_flags(self, data: Buffer) -> None:
        view = memoryview(data).cast("B")
        at = _FLG_OFFSET - self._member_input
        self._member_input += len(view)
        if 0 <= at < len(view) and view[at] & _FLG_RESERVED:
            raise _INFLATE_ERROR("unknown header flags set")

    def is_complete(self) -> bool:
        """True when the last member ended with a valid trailer."""
        return self._member_done


new_verifier: Final = verifier_for_backend("GzipVerifier", IsalGzipVerifier)


class GzipCheck(CompressedCheck):
    """Decompresses every gzip member, discarding the output; CRC-32 and length are checked."""

    def __init__(self, url: str, verifier: GzipVerifier | None = None) -> None:
        super().__init__(url, verifier if verifier is not None else new_verifier())


class GzipRegime(BinaryRegime):
    """Gzip (the Spansh dumps): stored as served, verified by decompressing to nowhere."""

    name: ClassVar[Regime] = "gzip"

    def content_check(self, request: DownloadRequest) -> GzipCheck:
        """A gzip stream check for this request's URL."""
        return GzipCheck(request.url)
