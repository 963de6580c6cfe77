"""Specification of content sniffing and of what a file name or an ``expect`` value requires."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import re
import zipfile
from typing import get_args

import magic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ed_extractor.errors import UnexpectedContentError
from ed_extractor.manifest.models import ContentRegime, Regime
from ed_extractor.services.file_transfer.context import DownloadContext
from ed_extractor.services.file_transfer.regimes.zstd import zstd
from ed_extractor.services.source_probe.sniff import (
    BITTORRENT,
    BZIP2,
    EXPECT_ALIASES,
    GZIP,
    HTML,
    JSON,
    OCTET_STREAM,
    SAMPLE_SIZE,
    TEXT,
    XML,
    XZ,
    ZIP,
    ZSTD,
    Expectation,
    check_expected,
    expectation_for,
    expected_mime_for_name,
    sniff_mime,
)

SYSTEMS = [
    {"id64": 10477373803, "name": "Sol", "coords": {"x": 0.0, "y": 0.0, "z": 0.0}},
    {"id64": 5069269509545, "name": "Ōkami Ærø", "coords": {"x": 1.5, "y": -2.25, "z": 3.0}},
] * 40


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("systems.json", json.dumps(SYSTEMS))
    return buffer.getvalue()


def _head(body: bytes) -> bytes:
    """What the probe hands the sniffer: at most the first SAMPLE_SIZE bytes."""
    return body[:SAMPLE_SIZE]


JSON_TEXT = json.dumps(SYSTEMS, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        pytest.param(_head(gzip.compress(JSON_TEXT)), GZIP, id="gzip"),
        pytest.param(_head(zstd.compress(JSON_TEXT)), ZSTD, id="zstd"),
        pytest.param(b"\x28\xb5\x2f\xfd", ZSTD, id="zstd-magic-only"),
        pytest.param(_head(bz2.compress(JSON_TEXT)), BZIP2, id="bzip2"),
        pytest.param(_head(lzma.compress(JSON_TEXT)), XZ, id="xz"),
        pytest.param(_head(_zip_bytes()), ZIP, id="zip"),
        pytest.param(
            b"<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head></html>",
            HTML,
            id="html-challenge-page",
        ),
        pytest.param(b"<html><body><h1>404 Not Found</h1></body></html>", HTML, id="html-bare"),
        pytest.param(
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>',
            XML,
            id="xml-s3-error",
        ),
        pytest.param(_head(JSON_TEXT), JSON, id="json-array-truncated"),
        pytest.param(b'\n\t  [{"id64": 1}]', JSON, id="json-array-leading-whitespace"),
        pytest.param(b'   \r\n{"name": "Sol"}', JSON, id="json-object-leading-whitespace"),
        pytest.param(b'{"name": "Sol"}', JSON, id="json-object"),
        pytest.param(b'\xef\xbb\xbf[{"id64": 1}]', JSON, id="json-with-utf8-bom"),
        pytest.param(b"hello, commander\n", TEXT, id="plain-text"),
        pytest.param(b"", OCTET_STREAM, id="empty"),
        pytest.param(random.Random(42).randbytes(SAMPLE_SIZE), OCTET_STREAM, id="random-binary"),
    ],
)
def test_sniff_mime_names_the_canonical_type(sample: bytes, expected: str) -> None:
    assert sniff_mime(sample) == expected


@pytest.mark.parametrize("cut", range(SAMPLE_SIZE - 8, SAMPLE_SIZE + 1))
def test_a_json_sample_cut_inside_a_multibyte_character_is_still_json(cut: int) -> None:
    text = ("[" + ", ".join(['{"name": "Ōkami Ærø Ψ"}'] * 100) + "]").encode()
    assert sniff_mime(text[:cut]) == JSON


def test_bytes_that_are_not_utf8_after_a_bracket_are_not_json() -> None:
    assert sniff_mime(b"[\xff\xfe\x00\x01" + bytes(range(256))) != JSON


def test_magic_numbers_win_over_libmagic(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> str:
        raise AssertionError("libmagic must not be asked about a known magic number")

    monkeypatch.setattr(magic, "from_buffer", refuse)
    assert sniff_mime(gzip.compress(b"x")) == GZIP


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("application/x-gzip", GZIP),
        ("application/x-zstd", ZSTD),
        ("text/xml", XML),
        ("application/xhtml+xml", HTML),
        ("text/html; charset=utf-8", HTML),
        ("application/x-empty", OCTET_STREAM),
        ("data", OCTET_STREAM),
        ("image/png", "image/png"),
    ],
)
def test_libmagic_answers_are_normalised(
    monkeypatch: pytest.MonkeyPatch, reported: str, expected: str
) -> None:
    monkeypatch.setattr(magic, "from_buffer", lambda *_, **__: reported)
    assert sniff_mime(b"\x00\x01 no known magic number") == expected


def test_a_libmagic_failure_means_octet_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> str:
        raise RuntimeError("magic database missing")

    monkeypatch.setattr(magic, "from_buffer", broken)
    assert sniff_mime(b"\x00\x01 no known magic number") == OCTET_STREAM


@given(st.binary(max_size=2 * SAMPLE_SIZE))
def test_sniff_mime_never_fails_and_always_names_a_type(sample: bytes) -> None:
    assert re.fullmatch(r"[a-z]+/[a-z0-9.+-]+", sniff_mime(sample))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("systems.json.gz", GZIP),
        ("galaxy_1month.json.gz", GZIP),
        ("DUMP.JSON.GZ", GZIP),
        ("archive.tgz", GZIP),
        ("systems.json", JSON),
        ("systems.json.zst", ZSTD),
        ("systems.json.zstd", ZSTD),
        ("systems.json.bz2", BZIP2),
        ("systems.json.xz", XZ),
        ("systems.zip", ZIP),
        ("systems.json.gz.html", None),
        ("galaxy", None),
        ("README.txt", None),
        (".gz", None),
        ("", None),
    ],
)
def test_expected_mime_for_name_follows_the_last_extension(name: str, expected: str | None) -> None:
    assert expected_mime_for_name(name) == expected


def test_expect_aliases_cover_every_content_regime() -> None:
    assert set(EXPECT_ALIASES) == set(get_args(ContentRegime))
    assert set(get_args(ContentRegime)) <= set(get_args(Regime))
    for name, mime in EXPECT_ALIASES.items():  # each value requires what selects that regime
        selected = DownloadContext().select_for("https://x/y", mime or "application/octet-stream")
        assert selected.name == name  # the content's regime, or the source torrent metainfo means


def test_expectation_comes_from_the_url_path_percent_decoded() -> None:
    assert expectation_for("https://downloads.spansh.co.uk/galaxy.json.gz?x=1") == Expectation(
        GZIP, "the .gz extension"
    )
    assert expectation_for("http://h/systems%2Ejson") == Expectation(JSON, "the .json extension")
    assert expectation_for("http://h/download?file=systems.json.gz") is None


def test_an_explicit_expect_overrides_the_extension() -> None:
    assert expectation_for("http://h/systems.json.gz", "json") == Expectation(
        JSON, 'expect = "json"'
    )
    assert expectation_for("http://h/systems.json.gz", "binary") is None
    assert expectation_for("http://h/blob", "zstd") == Expectation(ZSTD, 'expect = "zstd"')


def test_check_expected_names_what_was_expected_and_what_came() -> None:
    url = "http://h/systems.json.gz"
    check_expected(url, Expectation(GZIP, "the .gz extension"), GZIP)
    check_expected(url, None, HTML)
    with pytest.raises(UnexpectedContentError) as caught:
        check_expected(url, Expectation(GZIP, "the .gz extension"), HTML)
    assert caught.value.url == url
    assert caught.value.message == (
        "expected application/gzip (from the .gz extension) but the server sent text/html"
    )


# --- torrent metainfo -----------------------------------------------------------------------------

_INFO = b"4:infod6:lengthi3e4:name5:a.bin12:piece lengthi16384e6:pieces20:" + b"p" * 20 + b"e"


@pytest.mark.parametrize(
    "sample",
    [
        b"d" + _INFO + b"e",  # trackerless: libmagic answers "data"
        b"d8:announce22:http://tracker/announce13:creation datei1700000000e" + _INFO + b"e",
        b"d13:announce-listll3:udpel4:httpee7:comment3:hi!" + _INFO + b"e",
        (b"d7:comment900:" + b"c" * 900 + _INFO)[:SAMPLE_SIZE],  # info cut by the sample's end
    ],
)
def test_torrent_metainfo_is_recognised_by_its_info_dictionary(sample: bytes) -> None:
    assert sniff_mime(sample) == BITTORRENT


@pytest.mark.parametrize(
    "sample",
    [
        b"d3:fooi1ee",  # bencoded, but no info
        b"d3:fooi1e4:info5:helloe",  # info is not a dictionary
        b"dear reader, this is plain text",
        b"dx:info",
    ],
)
def test_other_bencoded_or_d_text_is_not_a_torrent(sample: bytes) -> None:
    assert sniff_mime(sample) != BITTORRENT


def test_a_torrent_url_must_serve_metainfo() -> None:
    expected = expectation_for("https://host/galaxy.json.gz.torrent")
    assert expected is not None
    assert expected.mime_type == BITTORRENT
