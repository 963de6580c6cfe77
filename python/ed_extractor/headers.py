"""Strict parsers for the HTTP headers the transfer relies on; only the project's errors escape.

Content-Range, Content-Length, Retry-After, HTTP dates and entity tags.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from ed_extractor.errors import ProtocolError

# RFC 9110 §14.4: "bytes" SP (first "-" last "/" (complete-length / "*") / "*/" complete-length).
# ASCII digits only (Python's \d would accept other scripts' digits), at most 18 of them (< 1 EB).
_CONTENT_RANGE = re.compile(
    r"bytes (?:(?P<start>[0-9]{1,18})-(?P<end>[0-9]{1,18})/(?P<total>[0-9]{1,18}|\*)"
    r"|\*/(?P<unsatisfied>[0-9]{1,18}))",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"[0-9]{1,18}")
# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
_ETAG = re.compile(r'(?P<weak>W/)?"(?P<opaque>[\x21\x23-\x7e\x80-\xff]*)"')


class ContentRange(NamedTuple):
    """Parsed Content-Range: ``start``/``end`` None for ``bytes */N``, ``total`` None for ``/*``."""

    start: int | None
    end: int | None
    total: int | None


def parse_content_range(value: str, url: str = "") -> ContentRange:
    """Parse a Content-Range header value strictly; raise ProtocolError (naming ``url``) on junk."""
    match = _CONTENT_RANGE.fullmatch(value.strip(" \t"))
    if match is None:
        raise ProtocolError(url, f"malformed Content-Range header {value[:80]!r}")
    if match["unsatisfied"] is not None:
        return ContentRange(None, None, int(match["unsatisfied"]))
    start, end = int(match["start"]), int(match["end"])
    total = None if match["total"] == "*" else int(match["total"])
    if end < start or (total is not None and end >= total):
        raise ProtocolError(url, f"inconsistent Content-Range header {value[:80]!r}")
    return ContentRange(start, end, total)


def parse_content_length(value: str | None) -> int | None:
    """Content-Length as an int, or None when absent or not a plain decimal number."""
    if value is None or _DIGITS.fullmatch(value.strip(" \t")) is None:
        return None
    return int(value)


def accepts_byte_ranges(value: str | None) -> bool:
    """True when an ``Accept-Ranges`` value lists the ``bytes`` unit (a comma list, any case)."""
    if value is None:
        return False
    return any(unit.strip().lower() == "bytes" for unit in value.split(","))


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date (IMF-fixdate or the obsolete forms) as an aware UTC datetime, else None."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After (delay-seconds or an HTTP date) as seconds from ``now`` (>= 0), else None."""
    if value is None:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(int(text))
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class EntityTag(NamedTuple):
    """A parsed ETag: the quoted tag as sent, and whether it is weak (``W/``)."""

    tag: str
    weak: bool


def parse_etag(value: str | None) -> EntityTag | None:
    """Parse an ETag header value; None when absent or malformed (then it is no validator)."""
    if value is None:
        return None
    text = value.strip(" \t")
    try:
        match = _ETAG.fullmatch(text)
    except TypeError:  # pragma: no cover - headers are always str here
        return None
    if match is None:
        return None
    return EntityTag(text, weak=match["weak"] is not None)


def if_range_validator(etag: str | None, last_modified: str | None) -> str | None:
    """What may go in If-Range: a strong ETag, else a valid Last-Modified date, else nothing."""
    parsed = parse_etag(etag)
    if parsed is not None and not parsed.weak:
        return parsed.tag
    if last_modified is not None and parse_http_date(last_modified) is not None:
        return last_modified.strip()
    return None
