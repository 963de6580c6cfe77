"""What the gzip and zstd checks share: the verifier API, its pure-Python skeleton, the check."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

from ed_extractor.errors import VerificationError
from ed_extractor.hashing import BACKEND
from ed_extractor.services.file_transfer.base import ContentSummary
from ed_extractor.services.file_transfer.regimes.json import JsonShape

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

# Bound the memory a highly compressed chunk can expand into in the pure-Python verifiers (the
# native ones go through a fixed 128 KiB buffer).
MAX_OUTPUT = 4 << 20


class StreamVerifier(Protocol):
    """Decompresses a stream to nowhere, following its JSON text (the ``_native`` verifiers' API).

    ``feed`` and ``finish`` raise ``ValueError`` ("corrupt <format> stream: ...", "truncated
    <format> stream (...)"); ``finish`` returns ``(uncompressed_bytes, records)``, records only
    when the text opens a JSON array.
    """

    def feed(self, data: Buffer) -> None:
        """Decompress the next chunk of the compressed stream."""
        ...

    def finish(self) -> tuple[int, int | None]:
        """End the stream: its uncompressed size and record count."""
        ...


class PythonVerifier(ABC):
    """A StreamVerifier of the pure-Python backend: a subclass decompresses, ``JsonShape`` follows.

    A failure is remembered and repeated by every later call, as the native verifiers do.
    """

    compression: ClassVar[str]
    """The format's name in messages, e.g. ``"gzip"``."""
    truncated: ClassVar[str]
    """What ``finish`` says when the stream stops inside a member or frame."""
    library_error: ClassVar[type[Exception]]
    """What the decompressing library raises on bad data."""

    def __init__(self) -> None:
        self.shape = JsonShape()
        self._failure: str | None = None
        self._finished = False

    @abstractmethod
    def decompress(self, data: Buffer) -> None:
        """Decompress ``data`` into ``self.shape``, in steps of at most ``MAX_OUTPUT`` bytes."""

    @abstractmethod
    def is_complete(self) -> bool:
        """True when the stream so far ends at the end of a member or frame."""

    def _finished_error(self) -> ValueError:
        return ValueError(f"operation on a finished {self.compression.capitalize()}Verifier")

    def feed(self, data: Buffer) -> None:
        """Decompress the next compressed chunk."""
        if self._finished:
            raise self._finished_error()
        if self._failure is not None:
            raise ValueError(self._failure)
        try:
            self.decompress(data)
        except self.library_error as exc:
            self._failure = f"corrupt {self.compression} stream: {exc}"
            raise ValueError(self._failure) from exc

    def finish(self) -> tuple[int, int | None]:
        """Fail unless the stream ended where a member or frame does; report size and records."""
        if self._finished:
            raise self._finished_error()
        self._finished = True
        if self._failure is not None:
            raise ValueError(self._failure)
        if not self.is_complete():
            raise ValueError(self.truncated)
        records = self.shape.records if self.shape.looks_like_array() else None
        return self.shape.size, records


def verifier_for_backend(
    native_name: str, fallback: Callable[[], StreamVerifier]
) -> Callable[[], StreamVerifier]:
    """``_native.<native_name>`` when the native backend is active, else ``fallback``."""
    if BACKEND == "native":
        from ed_extractor import _native

        native: Callable[[], StreamVerifier] = getattr(_native, native_name)
        return native
    return fallback


class CompressedCheck:
    """The ContentCheck of a compressed body: a StreamVerifier's errors become VerificationError."""

    def __init__(self, url: str, verifier: StreamVerifier) -> None:
        self._url = url
        self._verifier = verifier

    @property
    def native_verifier(self) -> StreamVerifier | None:
        """The verifier if the extension made it, for a native PartSink to feed on its threads."""
        return self._verifier if type(self._verifier).__module__ == "ed_extractor._native" else None

    def feed(self, chunk: bytes) -> None:
        """Decompress the next compressed chunk."""
        try:
            self._verifier.feed(chunk)
        except ValueError as exc:
            raise VerificationError(self._url, str(exc)) from exc

    def finish(self) -> ContentSummary:
        """Fail unless the stream is complete; report its uncompressed size and records."""
        try:
            size, records = self._verifier.finish()
        except ValueError as exc:
            raise VerificationError(self._url, str(exc)) from exc
        return ContentSummary(uncompressed_bytes=size, records=records)
