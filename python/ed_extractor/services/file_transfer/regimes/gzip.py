"""GzipRegime: gzip inflated to nowhere as it streams (CRC, length, JSON shape): native or ISA-L."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import ClassVar, Final, Protocol, cast

from isal import isal_zlib as zlib  # ISA-L: zlib-compatible, inflates about 3x faster

from ed_extractor.errors import VerificationError
from ed_extractor.hashing import BACKEND
from ed_extractor.manifest.models import Regime
from ed_extractor.services.file_transfer.base import ContentSummary, DownloadRequest
from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.services.file_transfer.regimes.json import JsonShape

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

_GZIP_WBITS = 16 + zlib.MAX_WBITS
# isal's stubs declare its error as an instance; at run time it is an exception class.
_INFLATE_ERROR = cast(type[Exception], zlib.error)
_MAX_OUTPUT = 4 << 20  # bound the memory a highly compressed chunk can expand into
_TRUNCATED: Final = "truncated gzip stream (no complete trailer)"
_FINISHED: Final = "operation on a finished GzipVerifier"


class GzipVerifier(Protocol):
    """Inflates a gzip stream to nowhere, following its JSON text (``_native.GzipVerifier``'s API).

    ``feed`` and ``finish`` raise ``ValueError`` ("corrupt gzip stream: ...", "truncated gzip
    stream (no complete trailer)"); ``finish`` returns ``(uncompressed_bytes, records)``, records
    only when the text opens a JSON array.
    """

    def feed(self, data: Buffer) -> None:
        """Inflate the next chunk of the compressed stream."""
        ...

    def finish(self) -> tuple[int, int | None]:
        """End the stream: its uncompressed size and record count."""
        ...


class IsalGzipVerifier:
    """The GzipVerifier of the pure-Python backend: ISA-L inflates, ``JsonShape`` follows."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._member_done = False
        self._shape = JsonShape()
        self._failure: str | None = None
        self._finished = False

    def feed(self, data: Buffer) -> None:
        """Decompress the next compressed chunk, starting new members as they come."""
        if self._finished:
            raise ValueError(_FINISHED)
        if self._failure is not None:
            raise ValueError(self._failure)
        try:
            self._inflate(data)
        except _INFLATE_ERROR as exc:
            self._failure = f"corrupt gzip stream: {exc}"
            raise ValueError(self._failure) from exc

    def _inflate(self, chunk: Buffer) -> None:
        data = chunk
        while data:
            if self._member_done:
                self._inflater = zlib.decompressobj(_GZIP_WBITS)
                self._member_done = False
            self._shape.feed(self._inflater.decompress(data, _MAX_OUTPUT))
            while self._inflater.unconsumed_tail:
                tail = self._inflater.unconsumed_tail
                self._shape.feed(self._inflater.decompress(tail, _MAX_OUTPUT))
            if self._inflater.eof:
                self._member_done = True
                data = self._inflater.unused_data
            else:
                data = b""

    def finish(self) -> tuple[int, int | None]:
        """Fail unless the last member ended with a valid trailer; report size and records."""
        if self._finished:
            raise ValueError(_FINISHED)
        self._finished = True
        if self._failure is not None:
            raise ValueError(self._failure)
        if not self._member_done:
            raise ValueError(_TRUNCATED)
        records = self._shape.records if self._shape.looks_like_array() else None
        return self._shape.size, records


def _verifier_for_backend() -> Callable[[], GzipVerifier]:
    """The native verifier when the native backend is active, else the ISA-L one."""
    if BACKEND == "native":
        from ed_extractor._native import GzipVerifier as NativeGzipVerifier

        return NativeGzipVerifier
    return IsalGzipVerifier


new_verifier: Final = _verifier_for_backend()


class GzipCheck:
    """Decompresses every gzip member, discarding the output; CRC-32 and length are checked."""

    def __init__(self, url: str, verifier: GzipVerifier | None = None) -> None:
        self._url = url
        self._verifier = verifier if verifier is not None else new_verifier()

    @property
    def native_verifier(self) -> GzipVerifier | None:
        """The verifier if the extension made it, for a native FileSink to feed on its threads."""
        return self._verifier if type(self._verifier).__module__ == "ed_extractor._native" else None

    def feed(self, chunk: bytes) -> None:
        """Decompress the next compressed chunk, starting new members as they come."""
        try:
            self._verifier.feed(chunk)
        except ValueError as exc:
            raise VerificationError(self._url, str(exc)) from exc

    def finish(self) -> ContentSummary:
        """Fail unless the last member ended with a valid trailer; report size and records."""
        try:
            size, records = self._verifier.finish()
        except ValueError as exc:
            raise VerificationError(self._url, str(exc)) from exc
        return ContentSummary(uncompressed_bytes=size, records=records)


class GzipRegime(BinaryRegime):
    """Gzip (the Spansh dumps): stored as served, verified by decompressing to nowhere."""

    name: ClassVar[Regime] = "gzip"

    def content_check(self, request: DownloadRequest) -> GzipCheck:
        """A gzip stream check for this request's URL."""
        return GzipCheck(request.url)
