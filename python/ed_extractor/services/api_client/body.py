"""Bounded API bodies: the Content-Encoding undone in small steps, never past a cap of bytes."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

from ed_extractor.errors import IncompleteBodyError, VerificationError

#: The most bytes one inflate step produces: a compressed chunk never becomes a large buffer.
STEP_BYTES = 1 << 20
#: Content-Encoding values this client asks for and undoes, with their zlib window bits.
ZLIB_ENCODINGS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLargeError(VerificationError):
    """The decoded answer is larger than the cap (``ED_EXTRACTOR_API_MAX_BYTES``)."""


def decoded_chunks(
    raw_chunks: Iterable[bytes], content_encoding: str | None, *, url: str, max_bytes: int
) -> Iterator[bytes]:
    """The decoded body of ``raw_chunks`` (as received), inflated ``STEP_BYTES`` at a time.

    An identity body comes in the pieces it was received in. BodyTooLargeError as soon as
    more than ``max_bytes`` decoded bytes would come; a compressed stream cut short is an
    IncompleteBodyError; data after its end, or an encoding other than identity, gzip or
    deflate, a VerificationError.
    """
    decoded = 0
    for piece in _decode(raw_chunks, content_encoding, url):
        decoded += len(piece)
        if decoded > max_bytes:
            raise BodyTooLargeError(
                url,
                f"the answer is larger than {max_bytes} bytes once decoded "
                "(ED_EXTRACTOR_API_MAX_BYTES)",
            )
        yield piece


def _decode(raw_chunks: Iterable[bytes], encoding: str | None, url: str) -> Iterator[bytes]:
    name = (encoding or "identity").strip().lower()
    if name == "identity":  # pieces as received: a socket read is at most 1 MiB (http.py)
        yield from raw_chunks
        return
    if name not in ZLIB_ENCODINGS:
        raise VerificationError(url, f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(ZLIB_ENCODINGS[name])
    try:
        for chunk in raw_chunks:
            if inflater.eof and chunk:
                raise VerificationError(url, f"data after the end of the {name} stream")
            yield from _inflate(inflater, chunk)
    except zlib.error as exc:
        raise VerificationError(url, f"the {name} stream is corrupt ({exc})") from None
    if not inflater.eof:
        raise IncompleteBodyError(url, f"the {name} stream ends early")
    if inflater.unused_data:
        raise VerificationError(url, f"data after the end of the {name} stream")


def _inflate(inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Inflate ``data`` at most STEP_BYTES at a time, draining what zlib still holds."""
    while True:
        out = inflater.decompress(data, STEP_BYTES)
        if out:
            yield out
        data = inflater.unconsumed_tail
        if not data and len(out) < STEP_BYTES:
            return
