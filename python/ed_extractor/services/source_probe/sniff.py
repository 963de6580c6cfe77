"""Content sniffing: canonical MIME types from a body's first bytes, and what a source must be."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import magic

from ed_extractor.errors import UnexpectedContentError

if TYPE_CHECKING:
    from ed_extractor.vocabulary import ContentRegime

GZIP = "application/gzip"
ZSTD = "application/zstd"
BZIP2 = "application/x-bzip2"
XZ = "application/x-xz"
ZIP = "application/zip"
JSON = "application/json"
HTML = "text/html"
XML = "application/xml"
TEXT = "text/plain"
OCTET_STREAM = "application/octet-stream"
BITTORRENT = "application/x-bittorrent"

SAMPLE_SIZE = 1024
"""How many leading bytes the sniffer looks at; the probe fetches exactly this many."""

_MAGIC_NUMBERS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"BZh", BZIP2),
    (b"\xfd7zXZ\x00", XZ),
    (b"PK\x03\x04", ZIP),
)

_ALIASES: dict[str, str] = {
    "application/x-gzip": GZIP,
    "application/gzip-compressed": GZIP,
    "application/x-zstd": ZSTD,
    "application/x-bzip": BZIP2,
    "application/x-xz": XZ,
    "application/x-zip-compressed": ZIP,
    "text/json": JSON,
    "application/xhtml+xml": HTML,
    "text/xml": XML,
    "application/x-empty": OCTET_STREAM,
    "inode/x-empty": OCTET_STREAM,
    "application/x-bittorrent": BITTORRENT,
}

_EXTENSIONS: dict[str, str] = {
    ".gz": GZIP,
    ".tgz": GZIP,
    ".json": JSON,
    ".zst": ZSTD,
    ".zstd": ZSTD,
    ".bz2": BZIP2,
    ".xz": XZ,
    ".zip": ZIP,
    ".torrent": BITTORRENT,
}

EXPECT_ALIASES: dict[ContentRegime, str | None] = {
    "gzip": GZIP,
    "json": JSON,
    "zstd": ZSTD,
    "bittorrent": BITTORRENT,
    "binary": None,
}
"""Values of a source's ``expect`` option -> the canonical MIME type required (None: anything)."""

_UTF8_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"


def sniff_mime(sample: bytes) -> str:
    """Return the canonical MIME type of a body from its first raw (never decoded) bytes."""
    if not sample:
        return OCTET_STREAM
    for prefix, mime in _MAGIC_NUMBERS:
        if sample.startswith(prefix):
            return mime
    if looks_like_torrent(sample):
        return BITTORRENT
    try:
        reported = str(magic.from_buffer(sample, mime=True))
    except Exception:  # libmagic failing on one sample must not fail the probe
        reported = OCTET_STREAM
    mime = _canonical(reported)
    if mime in (TEXT, JSON, OCTET_STREAM) and _looks_like_json_text(sample):
        return JSON
    if mime == JSON:  # libmagic's JSON that does not open a document is just text to us
        return TEXT
    return mime


_BENCODE_DIGITS = re.compile(rb"(0|[1-9][0-9]{0,9}):")
_BENCODE_INTEGER = re.compile(rb"i(0|-?[1-9][0-9]*)e")


def looks_like_torrent(sample: bytes) -> bool:
    """True if the sample opens torrent metainfo: a bencoded dictionary with an ``info`` dictionary.

    Keys before ``info`` (``announce``, ``comment``, ``creation date``, ...) are skipped by their
    bencoded lengths; a sample that ends before reaching ``info`` is not recognised here.
    """
    if not sample.startswith(b"d"):
        return False
    position = 1
    while position < len(sample) and sample[position : position + 1] != b"e":
        key_end = _bencoded_string_end(sample, position)
        if key_end is None:
            return False
        key = sample[sample.index(b":", position) + 1 : key_end]
        if key == b"info":
            return sample[key_end : key_end + 1] == b"d"
        value_end = _bencoded_value_end(sample, key_end)
        if value_end is None:
            return False
        position = value_end
    return False


def _bencoded_string_end(data: bytes, position: int) -> int | None:
    """Where the bencoded string at ``position`` ends, or None if it is not one (or is cut)."""
    match = _BENCODE_DIGITS.match(data, position)
    if match is None:
        return None
    end = match.end() + int(match.group(1))
    return end if end <= len(data) else None


def _bencoded_value_end(data: bytes, position: int, depth: int = 0) -> int | None:
    """Where the bencoded value at ``position`` ends, or None if it is malformed or cut."""
    head = data[position : position + 1]
    if head == b"i":
        match = _BENCODE_INTEGER.match(data, position)
        return None if match is None else match.end()
    if head in (b"l", b"d") and depth < 32:
        position += 1
        while data[position : position + 1] != b"e":
            if position >= len(data):
                return None
            if head == b"d":
                key_end = _bencoded_string_end(data, position)
                if key_end is None:
                    return None
                position = key_end
            end = _bencoded_value_end(data, position, depth + 1)
            if end is None:
                return None
            position = end
        return position + 1
    return _bencoded_string_end(data, position)


def _canonical(reported: str) -> str:
    """Normalise libmagic's answer: drop parameters, lower-case, map aliases; junk -> binary."""
    mime = reported.split(";", 1)[0].strip().lower()
    kind, slash, subtype = mime.partition("/")
    if not slash or not kind or not subtype:
        return OCTET_STREAM
    return _ALIASES.get(mime, mime)


def _looks_like_json_text(sample: bytes) -> bool:
    """True if the sample is UTF-8 text opening a JSON array or object (truncation is fine)."""
    text = sample.removeprefix(_UTF8_BOM).lstrip(_JSON_WHITESPACE)
    if not text or text[0] not in b"[{" or b"\x00" in text:
        return False
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end in the middle of a multi-byte character; only that is forgiven.
        return exc.reason == "unexpected end of data" and exc.start >= len(text) - 3
    return True


def expected_mime_for_name(name: str) -> str | None:
    """Return the MIME type a file called ``name`` must have, from its last extension, or None."""
    _, ext = posixpath.splitext(name.lower())
    return _EXTENSIONS.get(ext)


@dataclass(frozen=True)
class Expectation:
    """What a body must be, and where that requirement comes from (for the error message)."""

    mime_type: str
    origin: str


def expectation_for(url: str, expect: ContentRegime | None = None) -> Expectation | None:
    """What the body at ``url`` must be: the explicit ``expect`` wins, else the URL's extension.

    ``url`` is the URL as requested (never a redirect target); its last path segment is
    percent-decoded before its extension is looked at.
    """
    if expect is not None:
        mime = EXPECT_ALIASES[expect]
        return None if mime is None else Expectation(mime, f'expect = "{expect}"')
    name = unquote(posixpath.basename(urlsplit(url).path))
    mime = expected_mime_for_name(name)
    if mime is None:
        return None
    _, ext = posixpath.splitext(name.lower())
    return Expectation(mime, f"the {ext} extension")


def check_expected(url: str, expected: Expectation | None, sniffed: str) -> None:
    """Raise UnexpectedContentError if ``sniffed`` is not what ``expected`` requires."""
    if expected is None or sniffed == expected.mime_type:
        return
    raise UnexpectedContentError(
        url,
        f"expected {expected.mime_type} (from {expected.origin}) but the server sent {sniffed}",
    )
