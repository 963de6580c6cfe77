"""Specification of run settings (ED_EXTRACTOR_* variables) and of the sources file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ed_extractor.errors import ConfigError, InvalidURLError
from ed_extractor.pipeline.spansh_dump import torrent_options
from ed_extractor.services.sources.torrent_session import TorrentOptions
from ed_extractor.settings import Settings, SourceSpec, load_sources, parse_sources

SPANSH = "https://downloads.spansh.co.uk"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without any ED_EXTRACTOR_* variable from the outer environment."""
    for key in list(os.environ):
        if key.upper().startswith("ED_EXTRACTOR_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    """Load ``text`` as a sources file, expecting a ConfigError; return its one-line message."""
    with pytest.raises(ConfigError) as info:
        load_sources(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- Settings -----------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.dest == Path("data")
    assert settings.config is None
    assert settings.manifest is None
    assert settings.manifest_path == Path("data/manifest.sqlite3")
    assert (settings.connect_timeout, settings.read_timeout) == (10.0, 60.0)
    assert settings.max_redirects == 10
    assert settings.verify is True
    assert settings.log_format == "auto"
    assert settings.retry_attempts == 5
    assert settings.retry_max_wait_s == 300.0
    assert settings.deadline_s is None
    assert settings.lock_wait_s == 0.0


def test_settings_are_read_from_ed_extractor_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "DEST": "/srv/ed",
        "CONFIG": "/etc/ed/sources.toml",
        "CONNECT_TIMEOUT": "2.5",
        "READ_TIMEOUT": "30",
        "MAX_REDIRECTS": "0",
        "VERIFY": "false",
        "LOG_FORMAT": "json",
        "RETRY_ATTEMPTS": "2",
        "RETRY_MAX_WAIT_S": "0.5",
        "DEADLINE_S": "3600",
        "LOCK_WAIT_S": "5",
    }.items():
        monkeypatch.setenv(f"ED_EXTRACTOR_{key}", value)
    settings = Settings()
    assert settings.dest == Path("/srv/ed")
    assert settings.config == Path("/etc/ed/sources.toml")
    assert settings.manifest_path == Path("/srv/ed/manifest.sqlite3")
    assert (settings.connect_timeout, settings.read_timeout, settings.max_redirects) == (2.5, 30, 0)
    assert settings.verify is False
    assert settings.log_format == "json"
    assert settings.retry_attempts == 2
    assert settings.retry_max_wait_s == 0.5
    assert settings.deadline_s == 3600
    assert settings.lock_wait_s == 5.0


def test_an_explicit_manifest_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_MANIFEST", "/var/lib/ed/m.sqlite3")
    assert Settings(dest=Path("/srv/ed")).manifest_path == Path("/var/lib/ed/m.sqlite3")


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_DEST", "/from/env")
    monkeypatch.setenv("ED_EXTRACTOR_VERIFY", "0")
    assert Settings(dest=Path("/from/cli")).dest == Path("/from/cli")
    settings = Settings.from_environment(dest=Path("/from/cli"))
    assert (settings.dest, settings.verify) == (Path("/from/cli"), False)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_DEST", "")
    monkeypatch.setenv("ED_EXTRACTOR_READ_TIMEOUT", "")
    assert (Settings().dest, Settings().read_timeout) == (Path("data"), 60.0)


def test_other_ed_extractor_variables_are_not_settings_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_NATIVE", "0")  # read by ed_extractor.hashing, not by Settings
    assert Settings().dest == Path("data")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "READ_TIMEOUT",
            "soon",
            "invalid setting read_timeout (ED_EXTRACTOR_READ_TIMEOUT) = 'soon': "
            "Input should be a valid number, unable to parse string as a number",
        ),
        (
            "CONNECT_TIMEOUT",
            "0",
            "invalid setting connect_timeout (ED_EXTRACTOR_CONNECT_TIMEOUT) = '0': "
            "Input should be greater than 0",
        ),
        (
            "MAX_REDIRECTS",
            "-1",
            "invalid setting max_redirects (ED_EXTRACTOR_MAX_REDIRECTS) = '-1': "
            "Input should be greater than or equal to 0",
        ),
        (
            "LOG_FORMAT",
            "xml",
            "invalid setting log_format (ED_EXTRACTOR_LOG_FORMAT) = 'xml': "
            "Input should be 'auto', 'json' or 'text'",
        ),
        (
            "VERIFY",
            "perhaps",
            "invalid setting verify (ED_EXTRACTOR_VERIFY) = 'perhaps': "
            "Input should be a valid boolean, unable to interpret input",
        ),
        (
            "RETRY_ATTEMPTS",
            "0",
            "invalid setting retry_attempts (ED_EXTRACTOR_RETRY_ATTEMPTS) = '0': "
            "Input should be greater than or equal to 1",
        ),
    ],
)
def test_invalid_variables_are_one_line_config_errors(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"ED_EXTRACTOR_{variable}", value)
    with pytest.raises(ConfigError) as info:
        Settings()
    assert str(info.value) == message


def test_an_unknown_keyword_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'dset'"):
        Settings(dset=Path("x"))


# --- SourceSpec ---------------------------------------------------------------------------------


def test_source_name_defaults_to_the_urls_last_segment() -> None:
    spec = SourceSpec(url=f"{SPANSH}/galaxy_1day.json.gz")
    assert spec.name == "galaxy_1day.json.gz"
    assert (spec.expect, spec.enabled, spec.verify) == (None, True, True)
    assert (spec.expect_sha256, spec.max_bytes, spec.description) == (None, None, "")


def test_a_given_source_name_is_sanitised() -> None:
    assert SourceSpec(url=f"{SPANSH}/x", name="../.hidden").name == "_.hidden"


def test_expect_sha256_is_lower_cased() -> None:
    spec = SourceSpec(url=f"{SPANSH}/x", expect_sha256="AB" * 32)
    assert spec.expect_sha256 == "ab" * 32


def test_a_source_with_a_bad_url_raises_invalid_url_error() -> None:
    with pytest.raises(InvalidURLError, match="unsupported scheme 'ftp'"):
        SourceSpec(url="ftp://h/x.gz")


def test_a_source_with_a_bad_field_raises_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        SourceSpec(url=f"{SPANSH}/x", expect_sha256="abc")
    assert str(info.value) == "key 'expect_sha256': must be 64 hexadecimal digits"


# --- load_sources: the built-in list ------------------------------------------------------------


def test_the_built_in_sources_are_spanshs_dumps() -> None:
    sources = load_sources(None)
    assert {s.name: s.enabled for s in sources} == {
        "galaxy_1day.json.gz": True,
        "galaxy_7days.json.gz": True,
        "galaxy_1month.json.gz": True,
        "galaxy_populated.json.gz": True,
        "galaxy_stations.json.gz": True,
        "galaxy.json.gz": False,
    }
    for source in sources:
        assert source.url == f"{SPANSH}/{source.name}"
        assert source.expect == "gzip"
        assert source.description
        assert "\n" not in source.description


# --- load_sources: the shape of a file ----------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), ("4", 4), ("1", 1)])
def test_connections_are_auto_or_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: object
) -> None:
    assert Settings().connections == "auto"
    monkeypatch.setenv("ED_EXTRACTOR_CONNECTIONS", value)
    assert Settings().connections == expected


@pytest.mark.parametrize("value", ["0", "many", "-2"])
def test_other_connections_are_config_errors(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_CONNECTIONS", value)
    with pytest.raises(ConfigError, match="ED_EXTRACTOR_CONNECTIONS"):
        Settings()


def test_connections_come_from_defaults_unless_a_source_sets_them(tmp_path: Path) -> None:
    text = f"""
[defaults]
connections = 4

[[source]]
url = "{SPANSH}/a.json.gz"

[[source]]
url = "{SPANSH}/b.json.gz"
connections = "auto"
"""
    a, b = load_sources(write(tmp_path, text))
    assert (a.connections, b.connections) == (4, "auto")
    with pytest.raises(ConfigError, match="connections"):
        load_sources(write(tmp_path, f'[[source]]\nurl = "{SPANSH}/a.gz"\nconnections = 0\n'))


def test_a_minimal_file_is_one_url(tmp_path: Path) -> None:
    [source] = load_sources(write(tmp_path, f'[[source]]\nurl = "{SPANSH}/galaxy.json.gz"\n'))
    assert source == SourceSpec(url=f"{SPANSH}/galaxy.json.gz")


def test_defaults_apply_unless_a_source_sets_the_key(tmp_path: Path) -> None:
    text = f"""
[defaults]
expect = "gzip"
enabled = false
max_bytes = 1000

[[source]]
url = "{SPANSH}/a.json.gz"

[[source]]
url = "{SPANSH}/b.json"
name = "b-renamed.json"
expect = "json"
enabled = true
expect_sha256 = "{"CD" * 32}"
max_bytes = 5
verify = false
description = "the second one"
"""
    a, b = load_sources(write(tmp_path, text))
    assert a == SourceSpec(url=f"{SPANSH}/a.json.gz", expect="gzip", enabled=False, max_bytes=1000)
    assert b == SourceSpec(
        url=f"{SPANSH}/b.json",
        name="b-renamed.json",
        expect="json",
        enabled=True,
        expect_sha256="cd" * 32,
        max_bytes=5,
        verify=False,
        description="the second one",
    )


def test_sources_keep_the_files_order(tmp_path: Path) -> None:
    names = ["c.gz", "a.gz", "b.gz"]
    text = "".join(f'[[source]]\nurl = "{SPANSH}/{n}"\n' for n in names)
    assert [s.name for s in load_sources(write(tmp_path, text))] == names


# --- load_sources: every error is one line naming the file --------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    assert str(info.value) == f"cannot read config file {path}: No such file or directory"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[source]]\nurl = "https://h/\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_sources(path)
    assert str(info.value) == f"{path}: not UTF-8 text (bad byte at offset 28)"


def test_malformed_toml_names_the_line_and_column(tmp_path: Path) -> None:
    message = config_error(tmp_path, f'[[source]]\nurl = "{SPANSH}/a.gz"\nenabled = \n')
    assert (
        message
        == f"{tmp_path / 'sources.toml'}: invalid TOML: Invalid value (at line 3, column 11)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected one or more [[source]] tables"),
        ("[defaults]\nexpect = 'gzip'\n", "expected one or more [[source]] tables"),
        ("source = 'x'\n", "expected one or more [[source]] tables"),
        (f"[source]\nurl = '{SPANSH}/a.gz'\n", "expected one or more [[source]] tables"),
        ("source = [1]\n", "source #1: must be a table ([[source]])"),
        (
            f"[[sources]]\nurl = '{SPANSH}/a.gz'\n",
            "unknown top-level key 'sources' (expected [defaults] and [[source]])",
        ),
        ("defaults = 1\n", "'defaults' must be a table ([defaults])"),
        ("[defaults]\nurl = 'https://h/a'\n", "[defaults]: unknown key 'url'"),
        (
            "[defaults]\nenabled = 'yes'\n",
            "[defaults]: key 'enabled': Input should be a valid boolean",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\n\n"
            f"[[source]]\nurl = '{SPANSH}/b.gz'\nexpected = 'gzip'\n",
            f"source #2 ('{SPANSH}/b.gz'): unknown key 'expected'",
        ),
        (
            "[[source]]\nname = 'a.gz'\n",
            "source #1 ('a.gz'): missing required key 'url'",
        ),
        (
            "[[source]]\nurl = 42\n",
            "source #1: key 'url': Input should be a valid string",
        ),
        (
            "[[source]]\nurl = 'ftp://h/a.gz'\n",
            "source #1 ('ftp://h/a.gz'): invalid URL 'ftp://h/a.gz': "
            "unsupported scheme 'ftp'; use http://, https://, s3:// or magnet:",
        ),
        (
            "[[source]]\nurl = 'downloads.spansh.co.uk/a.gz'\n",
            "source #1 ('downloads.spansh.co.uk/a.gz'): invalid URL 'downloads.spansh.co.uk/a.gz': "
            "not an absolute URL (no scheme); use http://, https://, s3:// or magnet:",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/'\n",
            f"source #1 ('{SPANSH}/'): invalid URL '{SPANSH}/': "
            "no file name in the URL path (it is empty or ends with '/')",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a'\nname = '..'\n",
            "source #1 ('..'): invalid file name '..': nothing usable remains after sanitising",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\n[[source]]\nurl = 'http://mirror/a.gz'\n",
            "source #2 ('http://mirror/a.gz'): duplicate name 'a.gz' (also source #1)",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\n"
            f"[[source]]\nurl = '{SPANSH}/b.gz'\nname = 'a.gz'\n",
            "source #2 ('a.gz'): duplicate name 'a.gz' (also source #1)",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\nenabled = 'yes'\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'enabled': Input should be a valid boolean",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\nmax_bytes = '10'\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'max_bytes': Input should be a valid integer",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\nmax_bytes = 0\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'max_bytes': Input should be greater than 0",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\nexpect = 'rar'\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'expect': "
            "Input should be 'gzip', 'json', 'zstd', 'binary' or 'bittorrent'",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\nexpect_sha256 = 'abc'\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'expect_sha256': must be 64 hexadecimal digits",
        ),
        (
            f"[[source]]\nurl = '{SPANSH}/a.gz'\ndescription = 1\nverify = 'no'\n",
            f"source #1 ('{SPANSH}/a.gz'): key 'verify': Input should be a valid boolean; "
            "key 'description': Input should be a valid string",
        ),
    ],
)
def test_config_errors_name_the_file_the_source_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    assert config_error(tmp_path, text) == f"{tmp_path / 'sources.toml'}: {problem}"


# --- load_sources never fails in any other way --------------------------------------------------

toml_fragments = st.sampled_from(
    [
        "[[source]]",
        "[defaults]",
        "[source]",
        f'url = "{SPANSH}/a.gz"',
        f'url = "{SPANSH}/"',
        'url = "ftp://x/y"',
        "url = 1",
        'name = ".."',
        'name = "a.gz"',
        "enabled = 1",
        "enabled = true",
        'expect = "gzip"',
        'expect = "rar"',
        "max_bytes = -1",
        'expect_sha256 = "00"',
        "source = [1, 2]",
        "defaults = []",
        "x = [[[",
        'self = "x"',
        "__init__ = 1",
        "model_config = 1",
        "[[source.sub]]",
        "a.b.c = 1",
        "=",
        "",
    ]
)
toml_like = st.lists(st.one_of(toml_fragments, st.text(max_size=20)), max_size=12).map("\n".join)


def outcome(load: Callable[[], list[SourceSpec]]) -> list[SourceSpec] | ConfigError:
    """Run a loader; return its sources or its ConfigError (any other exception propagates)."""
    try:
        return load()
    except ConfigError as exc:
        return exc


@given(st.one_of(toml_like, st.text()))
def test_any_text_gives_sources_or_a_config_error(text: str) -> None:
    result = outcome(lambda: parse_sources(text, origin="fuzz.toml"))
    if isinstance(result, ConfigError):
        assert str(result).startswith("fuzz.toml: ")
        assert "\n" not in str(result)
    else:
        assert result
        assert len({s.name for s in result}) == len(result)


@given(st.binary(max_size=200))
def test_any_bytes_on_disk_give_sources_or_a_config_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sources.toml"
        path.write_bytes(data)
        result = outcome(lambda: load_sources(path))
    if isinstance(result, ConfigError):
        assert str(path) in str(result)


def test_a_local_torrent_source_is_relative_to_the_sources_file(tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    config.write_text(
        '[[source]]\ntorrent = "dumps/galaxy.json.gz.torrent"\npeers = ["127.0.0.1:6881"]\n'
        '[[source]]\nurl = "magnet:?xt=urn:btih:3c51f7e3cb8453b74160e3a1a80766edacc57c99"\n'
        'name = "galaxy"\n'
    )
    local, magnet = load_sources(config)
    assert local.torrent == str(tmp_path / "dumps" / "galaxy.json.gz.torrent")
    assert local.url == (tmp_path / "dumps" / "galaxy.json.gz.torrent").as_uri()
    assert local.name == "galaxy.json.gz"
    assert local.peers == ["127.0.0.1:6881"]
    assert magnet.name == "galaxy"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('torrent = "a.torrent"\nurl = "https://host/a"', "either url or torrent"),
        ('url = "file:///etc/passwd"', "torrent ="),
    ],
)
def test_a_torrent_source_is_a_path_not_a_file_url(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sources(f"[[source]]\n{table}\n")


def test_bittorrent_settings_read_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_BT_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("ED_EXTRACTOR_BT_PEERS", "127.0.0.1:1,[::1]:2")
    monkeypatch.setenv("ED_EXTRACTOR_BT_DHT", "0")
    monkeypatch.setenv("ED_EXTRACTOR_BT_UTP", "0")
    monkeypatch.setenv("ED_EXTRACTOR_BT_STALL_S", "7.5")
    settings = Settings()
    assert (settings.bt_listen, settings.bt_dht, settings.bt_utp) == ("127.0.0.1:0", False, False)
    assert settings.bt_stall_s == 7.5
    assert (settings.bt_lsd, settings.bt_upnp, settings.bt_natpmp, settings.bt_seed_s) == (
        True,
        True,
        True,
        0.0,
    )
    assert torrent_options(settings) == TorrentOptions(
        listen="127.0.0.1:0",
        peers=("127.0.0.1:1", "[::1]:2"),
        dht=False,
        utp=False,
        stall_s=7.5,
    )


def test_torrent_options_default_to_the_bittorrent_settings_defaults() -> None:
    assert torrent_options(Settings()) == TorrentOptions()


def test_api_settings_read_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.api_rate, defaults.api_burst) == (2.0, 4)
    assert defaults.api_max_bytes == 32 << 20  # Spansh's largest system dumps are a few MB
    monkeypatch.setenv("ED_EXTRACTOR_API_RATE", "5")
    monkeypatch.setenv("ED_EXTRACTOR_API_BURST", "1")
    monkeypatch.setenv("ED_EXTRACTOR_API_MAX_BYTES", "1000000")
    settings = Settings()
    assert (settings.api_rate, settings.api_burst, settings.api_max_bytes) == (5.0, 1, 1_000_000)


@pytest.mark.parametrize("value", ["0", "-1", "32MiB"])
def test_the_api_cap_is_a_positive_number_of_bytes(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_API_MAX_BYTES", value)
    with pytest.raises(
        ConfigError, match=r"invalid setting api_max_bytes \(ED_EXTRACTOR_API_MAX_BYTES\)"
    ):
        Settings()
