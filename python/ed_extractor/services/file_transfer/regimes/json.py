"""JsonRegime: a JSON document checked for completeness while it streams, its records counted."""

from __future__ import annotations

from typing import ClassVar

from ed_extractor.errors import VerificationError
from ed_extractor.services.file_transfer.base import ContentSummary, DownloadRequest
from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.vocabulary import Regime

_WHITESPACE = b" \t\r\n"
_CLOSERS = {ord("["): ord("]"), ord("{"): ord("}")}


class JsonShape:
    """Follows JSON text chunk by chunk: opened with ``[``/``{``, closed to match, records by line.

    Spansh dumps are one array with one object per line, so a record is a line starting with ``{``.
    The check is structural (opening and closing bytes, cheap enough for 100 GB); it does not
    parse every record.
    """

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.records = 0
        self.size = 0
        self._after_newline = False

    def feed(self, text: bytes) -> None:
        """Follow the next piece of the document."""
        if not text:
            return
        self.size += len(text)
        if self.first is None:
            head = text.lstrip(_WHITESPACE)
            if head:
                self.first = head[0]
        tail = text.rstrip(_WHITESPACE)  # the same object, no copy, unless it ends in whitespace
        if tail:
            self.last = tail[-1]
        self.records += text.count(b"\n{") + (
            1 if self._after_newline and text[0] == ord("{") else 0
        )
        self._after_newline = text[-1] == ord("\n")

    def is_complete(self) -> bool:
        """True when the document was opened with ``[`` or ``{`` and closed by its match."""
        return self.first in _CLOSERS and self.last == _CLOSERS[self.first]

    def looks_like_array(self) -> bool:
        """True when the document opened with ``[``."""
        return self.first == ord("[")


class JsonCheck:
    """The ContentCheck of a plain JSON body."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._shape = JsonShape()

    def feed(self, chunk: bytes) -> None:
        """Follow the next chunk; fail at once when it cannot open a JSON document."""
        self._shape.feed(chunk)
        if self._shape.first is not None and self._shape.first not in _CLOSERS:
            raise VerificationError(
                self._url, f"not a JSON document: starts with {chr(self._shape.first)!r}"
            )

    def finish(self) -> ContentSummary:
        """Fail unless the document was closed; report its size and record count."""
        if not self._shape.is_complete():
            raise VerificationError(self._url, "JSON document is incomplete (not closed)")
        records = self._shape.records if self._shape.looks_like_array() else None
        return ContentSummary(uncompressed_bytes=self._shape.size, records=records)


class JsonRegime(BinaryRegime):
    """Plain JSON: stored as is, checked for a complete document, records counted."""

    name: ClassVar[Regime] = "json"

    def content_check(self, request: DownloadRequest) -> JsonCheck:
        """A JSON completeness check for this request's URL."""
        return JsonCheck(request.url)
