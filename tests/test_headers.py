"""The header parsers: RFC forms accepted, junk rejected or ignored, never a foreign exception."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ed_extractor.errors import EdExtractorError, ProtocolError
from ed_extractor.headers import (
    ContentRange,
    EntityTag,
    accepts_byte_ranges,
    if_range_validator,
    parse_content_length,
    parse_content_range,
    parse_etag,
    parse_http_date,
    parse_retry_after,
)

NOW = datetime(2026, 11, 25, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-1023/4096", ContentRange(0, 1023, 4096)),
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("BYTES 0-1023/4096", ContentRange(0, 1023, 4096)),
        ("bytes 0-1023/*", ContentRange(0, 1023, None)),
        ("bytes */4096", ContentRange(None, None, 4096)),
        ("bytes */0", ContentRange(None, None, 0)),
        (" bytes 100-199/200 ", ContentRange(100, 199, 200)),
        ("bytes 0-1023/107374182400", ContentRange(0, 1023, 107_374_182_400)),
    ],
)
def test_parse_content_range_accepts_the_rfc_forms(value: str, parsed: ContentRange) -> None:
    assert parse_content_range(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes 0-1023",
        "bytes=0-1023/4096",
        "items 0-1/2",
        "bytes */*",
        "bytes 1023-0/4096",
        "bytes 0-4096/4096",
        "bytes -1-5/10",
        "bytes +0-5/10",
        "bytes 0-5/10 trailing",
        "bytes  0-5/10",
        "bytes 0-\u0661\u0660/20",
        "bytes 0-1/" + "9" * 19,
        "bytes 0-1/" + "9" * 5000,
    ],
)
def test_parse_content_range_rejects_anything_else_with_a_protocol_error(value: str) -> None:
    with pytest.raises(ProtocolError, match="Content-Range") as caught:
        parse_content_range(value, "http://h/x.json.gz")
    assert caught.value.url == "http://h/x.json.gz"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 25 Nov 2026 03:00:30 GMT", 30.0),
        ("Wednesday, 25-Nov-26 03:01:00 GMT", 60.0),
        ("Wed Nov 25 03:00:05 2026", 5.0),
        ("Tue, 24 Nov 2026 03:00:00 GMT", 0.0),  # a date in the past means now
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_from_now(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ('"abc"', EntityTag('"abc"', weak=False)),
        ('W/"abc"', EntityTag('W/"abc"', weak=True)),
        ('""', EntityTag('""', weak=False)),
        (' "6b076cc0-3d7c5c" ', EntityTag('"6b076cc0-3d7c5c"', weak=False)),
        ("abc", None),
        ('"a"b"', None),
        ('w/"abc"', None),
        (None, None),
    ],
)
def test_parse_etag(value: str | None, parsed: EntityTag | None) -> None:
    assert parse_etag(value) == parsed


def test_if_range_prefers_a_strong_etag_and_never_uses_a_weak_one() -> None:
    date = "Wed, 25 Nov 2026 03:00:00 GMT"
    assert if_range_validator('"v1"', date) == '"v1"'
    assert if_range_validator('W/"v1"', date) == date
    assert if_range_validator('W/"v1"', None) is None
    assert if_range_validator(None, "not a date") is None


def test_parse_http_date_and_content_length() -> None:
    assert parse_http_date("Wed, 25 Nov 2026 03:00:00 GMT") == NOW
    assert parse_http_date("yesterday") is None
    assert parse_content_length("1024") == 1024
    assert parse_content_length("-1") is None
    assert parse_content_length("1e3") is None


@given(st.text(max_size=200))
def test_header_parsers_never_raise_a_foreign_exception(text: str) -> None:
    parse_retry_after(text, now=NOW)
    parse_http_date(text)
    parse_etag(text)
    parse_content_length(text)
    if_range_validator(text, text)
    with contextlib.suppress(EdExtractorError):
        parse_content_range(text)


@given(st.integers(0, 2**58), st.integers(0, 2**58), st.integers(1, 2**59))  # < 10**18 bytes
def test_parse_content_range_round_trips_valid_ranges(start: int, length: int, total: int) -> None:
    end = start + length
    value = f"bytes {start}-{end}/{total}"
    if end < total:
        assert parse_content_range(value) == ContentRange(start, end, total)
    else:
        with pytest.raises(ProtocolError):
            parse_content_range(value)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("bytes", True),
        (" Bytes ", True),
        ("other, bytes", True),
        ("none", False),
        ("", False),
        (None, False),
        ("nobytes", False),  # a unit is a whole token, not a substring
        ("bytes-ish", False),
    ],
)
def test_accept_ranges_lists_the_bytes_unit(value: str | None, accepted: bool) -> None:
    assert accepts_byte_ranges(value) is accepted
