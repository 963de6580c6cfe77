"""JsonDocumentCheck: validates one JSON document chunk by chunk, holding one token at a time."""

from __future__ import annotations

import codecs
import re

#: Nesting deeper than this is refused, as json.loads refuses it (RecursionError).
MAX_DEPTH = 1000
#: The longest token (a string, a number) carried from one chunk to the next.
MAX_TOKEN_BYTES = 4 << 20

_WHITESPACE = re.compile(rb"[ \t\n\r]*+")
_TOKEN = re.compile(  # whitespace, then one token
    rb'[ \t\n\r]*+(?:(?P<string>"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+")'
    rb"|(?P<number>-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?)"
    rb"|(?P<literal>true|false|null)"
    rb"|(?P<punctuation>[{}\[\],:]))"
)
_TOKEN_PREFIX = re.compile(  # what a token cut by the end of a chunk may look like
    rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+(?:\\(?:u[0-9a-fA-F]{0,3})?)?'
    rb"|-?[0-9]*+(?:\.[0-9]*+)?(?:[eE][+-]?[0-9]*+)?"
    rb"|t(?:r(?:ue?)?)?|f(?:a(?:l(?:se?)?)?)?|n(?:u(?:ll?)?)?"
)
_NUMBER_CHARACTERS = re.compile(rb"[0-9.eE+-]*+")
_LONGEST_NUMBER_TAIL = 64  # number characters left after a number token: only then may it go on
_OPENERS = {ord("{"): ord("}"), ord("["): ord("]")}

# What may come next.
_VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _SEPARATOR, _END = range(7)


class JsonDocumentCheck:
    """Checks that the bytes fed in order are one JSON document (RFC 8259, UTF-8).

    The grammar is followed token by token with a stack of the open containers; no value is
    built, so memory stays at one chunk plus one token (at most ``MAX_TOKEN_BYTES``) whatever
    the document holds. ``first`` is the document's first byte (``{`` for an object).
    ``feed`` and ``finish`` raise ValueError naming the first problem.
    """

    def __init__(self) -> None:
        self.first: int | None = None
        self.size = 0
        self._pending = b""
        self._base = 0  # the offset in the document of the text being scanned
        self._open = bytearray()  # the closing byte of each open container
        self._expect = _VALUE
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        """Follow the next piece of the document."""
        self._utf8.decode(chunk)  # UnicodeDecodeError is a ValueError
        self._base = self.size - len(self._pending)
        self.size += len(chunk)
        text = self._pending + chunk if self._pending else chunk
        self._pending = text[self._scan(text, final=False) :]
        if len(self._pending) > MAX_TOKEN_BYTES:
            at = self.size - len(self._pending)
            raise ValueError(f"a token longer than {MAX_TOKEN_BYTES} bytes at byte {at}")

    def finish(self) -> None:
        """Fail unless the document is complete, with nothing but whitespace after it."""
        self._utf8.decode(b"", final=True)
        self._base = self.size - len(self._pending)
        position = self._scan(self._pending, final=True)
        if position < len(self._pending):
            raise self._unexpected(self._pending, position)
        if self._expect != _END:
            raise ValueError("the document ends early" if self.size else "the body is empty")

    def _unexpected(self, text: bytes, position: int) -> ValueError:
        return ValueError(
            f"unexpected {text[position : position + 1]!r} at byte {self._base + position}"
        )

    def _scan(self, text: bytes, *, final: bool) -> int:
        """Take the whole tokens of ``text``; return where the unfinished rest begins."""
        position = 0
        while True:
            token = _TOKEN.match(text, position)
            if token is None or (
                token.lastgroup == "number"
                and token.end() + _LONGEST_NUMBER_TAIL > len(text)
                and _NUMBER_CHARACTERS.fullmatch(text, token.end())
            ):  # invalid, or a token that may go on in the next chunk
                position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
                if final:
                    return position if token is None else self._take_last(token, text, position)
                if _TOKEN_PREFIX.fullmatch(text, position) is None:
                    raise self._unexpected(text, position)
                return position
            self._take(token.lastgroup or "", text, token.start(token.lastgroup or 0))
            position = token.end()

    def _take_last(self, token: re.Match[bytes], text: bytes, position: int) -> int:
        self._take("number", text, position)
        return token.end()

    def _take(self, kind: str, text: bytes, position: int) -> None:
        byte = text[position]
        if self.first is None:
            self.first = byte
        expect = self._expect
        if kind == "punctuation" and byte in b"]}" and self._open and byte == self._open[-1]:
            if expect in (_SEPARATOR, _FIRST_VALUE, _FIRST_KEY):
                self._open.pop()
                self._after_value()
                return
        elif expect in (_VALUE, _FIRST_VALUE) and (kind != "punctuation" or byte in _OPENERS):
            self._take_value(byte)
            return
        elif expect in (_KEY, _FIRST_KEY) and kind == "string":
            self._expect = _COLON
            return
        elif kind == "punctuation" and (expect, byte) in (
            (_COLON, ord(":")),
            (_SEPARATOR, ord(",")),
        ):
            self._expect = _VALUE if byte == ord(":") or self._open[-1] == ord("]") else _KEY
            return
        raise self._unexpected(text, position)

    def _take_value(self, byte: int) -> None:
        closer = _OPENERS.get(byte)
        if closer is None:
            self._after_value()
            return
        if len(self._open) >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        self._open.append(closer)
        self._expect = _FIRST_KEY if byte == ord("{") else _FIRST_VALUE

    def _after_value(self) -> None:
        self._expect = _SEPARATOR if self._open else _END
