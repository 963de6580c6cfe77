"""Specification of file names, URL checks and the stay-inside-dest rule (ed_extractor.paths)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ed_extractor.errors import ConfigError, EdExtractorError, InvalidURLError, StorageError
from ed_extractor.paths import (
    MAX_NAME_BYTES,
    name_from_url,
    part_path,
    resolve_inside,
    sanitize_name,
    validate_url,
)

SPANSH = "https://downloads.spansh.co.uk"

# Any text, lone surrogates included, rich in the pieces that make names dangerous.
nasty_text = st.lists(
    st.one_of(
        st.sampled_from(["/", "\\", ".", "..", "\x00", " ", "%", "%2F", "%00", "%2E", "é", "★"]),
        st.characters(exclude_categories=[]),
    ),
    max_size=300,
).map("".join)


# --- validate_url -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"{SPANSH}/galaxy.json.gz",
        "http://127.0.0.1:8080/x",
        "HTTPS://EXAMPLE.COM/a?b=c#d",
        "http://[::1]:9/x",
        "https://user:pw@host/x",
    ],
)
def test_validate_url_accepts_absolute_http_and_https(url: str) -> None:
    assert validate_url(url) == url


def test_validate_url_strips_surrounding_whitespace() -> None:
    assert validate_url("  https://host/a  \n") == "https://host/a"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://host/file", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("galaxy.json.gz", "not an absolute URL"),
        ("//host/a", "not an absolute URL"),
        ("https:///a", "missing host"),
        ("http://:80/a", "missing host"),
        ("https://host:99999/a", "malformed"),
        ("https://host:port/a", "malformed"),
        ("http://[::1/a", "malformed"),
        ("https://host/a b", "whitespace or control characters"),
        ("https://host/a\x00b", "whitespace or control characters"),
        ("", "empty URL"),
    ],
)
def test_validate_url_rejects_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidURLError, match=reason) as info:
        validate_url(url)
    assert info.value.url == url
    assert "\n" not in str(info.value)


# --- name_from_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (f"{SPANSH}/galaxy_1day.json.gz", "galaxy_1day.json.gz"),
        (f"{SPANSH}/dumps/galaxy.json.gz?token=1#frag", "galaxy.json.gz"),
        (f"{SPANSH}/galaxy%20populated.json.gz", "galaxy populated.json.gz"),
        (f"{SPANSH}/a%2Fb", "a_b"),
        (f"{SPANSH}/a%5Cb", "a_b"),
        (f"{SPANSH}/..%2F..%2Fx", "_.._x"),
        (f"{SPANSH}/evil%00.gz", "evil.gz"),
        (f"{SPANSH}/bell%07%0A.gz", "bell.gz"),
        (f"{SPANSH}/.hidden", "hidden"),
        (f"{SPANSH}/...triple", "triple"),
        (f"{SPANSH}/%C3%A9toile.json", "étoile.json"),
        (f"{SPANSH}/%E2%98%85.json", "★.json"),
        (f"{SPANSH}/bad%FFutf8", "bad\N{REPLACEMENT CHARACTER}utf8"),
    ],
)
def test_name_is_the_last_segment_decoded_and_sanitised(url: str, name: str) -> None:
    assert name_from_url(url) == name


@pytest.mark.parametrize(
    "url",
    [
        f"{SPANSH}/",
        f"{SPANSH}",
        f"{SPANSH}/dumps/",
        f"{SPANSH}/%00",
        f"{SPANSH}/..",
        f"{SPANSH}/.",
        f"{SPANSH}/%2E%2E",
        f"{SPANSH}/%20%20",
    ],
)
def test_url_without_a_usable_last_segment_is_an_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        name_from_url(url)
    assert info.value.url == url


def test_name_from_url_checks_the_url_first() -> None:
    with pytest.raises(InvalidURLError, match="unsupported scheme"):
        name_from_url("ftp://host/galaxy.json.gz")


# --- sanitize_name ------------------------------------------------------------------------------


def test_long_name_is_cut_to_255_bytes_keeping_its_extension() -> None:
    name = sanitize_name("g" * 400 + ".json.gz")
    assert len(name.encode()) == MAX_NAME_BYTES
    assert name.endswith("g.json.gz")


def test_long_multibyte_name_is_cut_on_a_character_boundary() -> None:
    name = sanitize_name("é" * 300 + ".json")  # 2 bytes per é
    encoded = name.encode()
    assert len(encoded) <= MAX_NAME_BYTES
    assert name == "é" * 125 + ".json"


def test_long_name_without_extension_is_simply_cut() -> None:
    assert sanitize_name("x" * 1000) == "x" * MAX_NAME_BYTES


def test_name_of_exactly_255_bytes_is_kept() -> None:
    name = "a" * 250 + ".json"
    assert sanitize_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "...", ". .", " . . ", "\x00", " \t ", "\x7f\x9f"])
def test_sanitize_refuses_a_name_with_nothing_left(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid file name"):
        sanitize_name(name)


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in {"Cc", "Cs", "Zl", "Zp"}


@given(st.one_of(nasty_text, st.text(min_size=250, max_size=600)))
def test_sanitize_never_returns_an_unsafe_name(name: str) -> None:
    try:
        safe = sanitize_name(name)
    except ConfigError:
        return
    assert safe
    assert not any(ch in "/\\\x00" or _is_control(ch) for ch in safe)
    assert not safe.startswith(".")
    assert safe not in {".", ".."}
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert sanitize_name(safe) == safe  # idempotent


@given(nasty_text)
def test_name_from_url_raises_only_project_errors(segment: str) -> None:
    for url in (segment, f"{SPANSH}/{segment}"):
        try:
            name = name_from_url(url)
        except EdExtractorError:
            continue
        assert name == sanitize_name(name)


# --- resolve_inside / part_path -----------------------------------------------------------------


def test_resolve_inside_returns_the_path_under_the_resolved_dest(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "galaxy.json.gz") == tmp_path.resolve() / "galaxy.json.gz"
    assert resolve_inside(tmp_path, "api/dump/1.json") == tmp_path.resolve() / "api/dump/1.json"


def test_resolve_inside_works_when_dest_itself_is_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert resolve_inside(tmp_path / "link", "a.gz") == real.resolve() / "a.gz"


def test_resolve_inside_refuses_a_symlink_that_points_outside(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "galaxy.json.gz").symlink_to(outside / "galaxy.json.gz")
    with pytest.raises(StorageError, match="outside the destination") as info:
        resolve_inside(dest, "galaxy.json.gz")
    assert info.value.path == dest.resolve() / "galaxy.json.gz"


def test_resolve_inside_refuses_a_symlinked_directory_that_points_outside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "api").symlink_to(tmp_path)
    with pytest.raises(StorageError, match="outside the destination"):
        resolve_inside(dest, "api/x.json")


def test_resolve_inside_allows_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "target").touch()
    (tmp_path / "alias").symlink_to(tmp_path / "target")
    assert resolve_inside(tmp_path, "alias") == tmp_path.resolve() / "alias"


def test_resolve_inside_refuses_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(StorageError):
        resolve_inside(tmp_path, "loop")


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/../../x", "/etc/passwd", "a\\b", "a\x00b", "./a"]
)
def test_resolve_inside_refuses_names_that_are_not_plain_relative_paths(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(StorageError):
        resolve_inside(tmp_path, name)


@given(nasty_text)
def test_a_sanitised_name_always_resolves_inside_dest(name: str) -> None:
    dest = Path(os.getcwd())
    try:
        safe = sanitize_name(name)
    except ConfigError:
        return
    assert resolve_inside(dest, safe).parent == dest.resolve()


def test_part_path_is_next_to_the_final_file() -> None:
    assert part_path(Path("/d/galaxy.json.gz")) == Path("/d/galaxy.json.gz.part")


# --- magnet links and torrent URLs ---------------------------------------------------------------

_BTIH = "urn:btih:3c51f7e3cb8453b74160e3a1a80766edacc57c99"


def test_a_magnet_link_with_an_info_hash_is_a_source() -> None:
    link = f"magnet:?xt={_BTIH}&dn=galaxy.json.gz"
    assert validate_url(f"  {link} ") == link
    assert name_from_url(link) == "galaxy.json.gz"
    assert name_from_url(f"magnet:?xt={_BTIH}") == "3c51f7e3cb8453b74160e3a1a80766edacc57c99"
    assert name_from_url(f"magnet:?xt={_BTIH}&dn=../../etc/passwd") == "_.._etc_passwd"


def test_a_magnet_link_without_an_info_hash_is_refused() -> None:
    with pytest.raises(InvalidURLError, match="without a BitTorrent info-hash"):
        validate_url("magnet:?dn=x&xt=urn:sha1:abc")


def test_a_torrent_url_names_its_payload() -> None:
    assert name_from_url("https://host/d/galaxy.json.gz.torrent") == "galaxy.json.gz"
    assert name_from_url("https://host/d/.torrent") == "torrent"
