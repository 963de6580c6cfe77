"""JsonDocumentCheck: validates one JSON document chunk by chunk, holding one token at a time."""

from __future__ import annotations

import codecs
import re

#: Nesting deeper than this is refused, as json.loads refuses it (RecursionError).
MAX_DEPTH = 1000
#: The longest token (a string, a number) carried from one chunk to the next.
MAX_TOKEN_BYTES = 4 << 20

_STRING = rb'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+'
_TOKEN = re.compile(  # whitespace, then one token (group 1)
    rb"[ \t\n\r]*+("
    + _STRING
    + rb'"|-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?|true|false|null|[{}\[\],:])'
)
_TOKEN_PREFIX = re.compile(  # what a token cut by the end of a chunk may look like
    rb"[ \t\n\r]*+(?:"
    + _STRING
    + rb"(?:\\(?:u[0-9a-fA-F]{0,3})?)?"
    + rb"|-?[0-9]*+(?:\.[0-9]*+)?(?:[eE][+-]?[0-9]*+)?"
    + rb"|t(?:r(?:ue?)?)?|f(?:a(?:l(?:se?)?)?)?|n(?:u(?:ll?)?)?)"
)
_WHITESPACE = re.compile(rb"[ \t\n\r]*+")
_NUMBER_CHARACTERS = re.compile(rb"[0-9.eE+-]*+")
_NUMBER_START = frozenset(b"-0123456789")
_LONGEST_NUMBER_TAIL = 64  # number characters left after a number token: only then may it go on

# Token classes, by the token's first byte.
_SCALAR, _STRING_TOKEN, _OPEN_ARRAY, _OPEN_OBJECT, _CLOSE_ARRAY, _CLOSE_OBJECT, _COMMA, _COLON = (
    range(8)
)
_CLASS = dict.fromkeys(b"-0123456789tfn", _SCALAR) | {
    ord('"'): _STRING_TOKEN, ord("["): _OPEN_ARRAY, ord("{"): _OPEN_OBJECT,
    ord("]"): _CLOSE_ARRAY, ord("}"): _CLOSE_OBJECT, ord(","): _COMMA, ord(":"): _COLON,
}  # fmt: skip

# Where the document is: what may come next.
(_TOP, _ARRAY_FIRST, _ARRAY_VALUE, _ARRAY_NEXT, _OBJECT_FIRST, _OBJECT_KEY, _OBJECT_COLON,
 _OBJECT_VALUE, _OBJECT_NEXT, _END) = range(10)  # fmt: skip
# The state after a value completed in each state that takes a value.
_AFTER_VALUE = {
    _TOP: _END, _ARRAY_FIRST: _ARRAY_NEXT, _ARRAY_VALUE: _ARRAY_NEXT, _OBJECT_VALUE: _OBJECT_NEXT
}  # fmt: skip
_STEPS = {  # (state, token class) -> next state, for every token but an opener or a closer
    **{(state, _SCALAR): after for state, after in _AFTER_VALUE.items()},
    **{(state, _STRING_TOKEN): after for state, after in _AFTER_VALUE.items()},
    (_OBJECT_FIRST, _STRING_TOKEN): _OBJECT_COLON,
    (_OBJECT_KEY, _STRING_TOKEN): _OBJECT_COLON,
    (_OBJECT_COLON, _COLON): _OBJECT_VALUE,
    (_ARRAY_NEXT, _COMMA): _ARRAY_VALUE,
    (_OBJECT_NEXT, _COMMA): _OBJECT_KEY,
}
_OPENED = {_OPEN_ARRAY: _ARRAY_FIRST, _OPEN_OBJECT: _OBJECT_FIRST}
_CLOSING = frozenset({(_ARRAY_FIRST, _CLOSE_ARRAY), (_ARRAY_NEXT, _CLOSE_ARRAY),
                      (_OBJECT_FIRST, _CLOSE_OBJECT), (_OBJECT_NEXT, _CLOSE_OBJECT)})  # fmt: skip


class JsonDocumentCheck:
    """Checks that the bytes fed in order are one JSON document (RFC 8259, UTF-8).

    The grammar is followed token by token (a state table and a stack of the open containers);
    no value is built, so memory stays at one chunk plus one token (at most
    ``MAX_TOKEN_BYTES``) whatever the document holds. ``first`` is the document's first byte
    (``{`` for an object). ``feed`` and ``finish`` raise ValueError naming the first problem.
    """

    def __init__(self) -> None:
        self.first: int | None = None
        self.size = 0
        self._pending = b""
        self._base = 0  # the offset in the document of the text being scanned
        self._state = _TOP
        self._stack: list[int] = []  # the state to return to when each open container closes
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
        if self._state != _END:
            raise ValueError("the document ends early" if self.size else "the body is empty")

    def _unexpected(self, text: bytes, position: int) -> ValueError:
        at = self._base + position
        return ValueError(f"unexpected {text[position : position + 1]!r} at byte {at}")

    def _scan(self, text: bytes, *, final: bool) -> int:
        """Take the whole tokens of ``text``; return where the unfinished rest begins."""
        if self.first is None and (token := _TOKEN.match(text)) is not None:
            self.first = text[token.start(1)]
        position, state, steps = 0, self._state, _STEPS
        try:
            while (token := _TOKEN.match(text, position)) is not None:
                start, position = token.span(1)
                if text[start] in _NUMBER_START and self._may_go_on(text, position, final):
                    return start
                step = steps.get((state, _CLASS[text[start]]))
                state = self._change(state, text, start) if step is None else step
            position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
            if not final and _TOKEN_PREFIX.fullmatch(text, position) is None:
                raise self._unexpected(text, position)
            return position
        finally:
            self._state = state

    @staticmethod
    def _may_go_on(text: bytes, end: int, final: bool) -> bool:
        """True when the number ending at ``end`` reaches the end of the chunk and may go on."""
        return (
            not final
            and end + _LONGEST_NUMBER_TAIL > len(text)
            and _NUMBER_CHARACTERS.fullmatch(text, end) is not None
        )

    def _change(self, state: int, text: bytes, start: int) -> int:
        """The state after an opener or a closer at ``start``; ValueError for any other token."""
        kind = _CLASS[text[start]]
        if (state, kind) in _CLOSING:
            return self._stack.pop()
        if kind in _OPENED and state in _AFTER_VALUE:
            if len(self._stack) >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            self._stack.append(_AFTER_VALUE[state])
            return _OPENED[kind]
        raise self._unexpected(text, start)
