"""The command-line contract of docs/architecture.md, run as a user runs it: real servers."""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

import blake3
import pytest

from ed_extractor.cli import build_parser
from ed_extractor.demo.generator import generate_dump
from ed_extractor.demo.mirror import StaticFileHandler, nginx_path, start_mirror
from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.lock import LOCK_FILE_NAME
from tests.httpd import QuietHandler, serve

FETCH_KEYS = {
    "name", "url", "status", "path", "bytes", "sha256", "blake3", "regime", "mime_type", "etag",
    "last_modified", "error", "elapsed_s",
}  # fmt: skip
PROBE_KEYS = {
    "url", "final_url", "status_code", "content_length", "etag", "last_modified", "mime_type",
    "is_range_supported", "content_type", "content_encoding",
}  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ed-extractor ARGS`` in a fresh interpreter, as a user or a CronJob would."""
    return subprocess.run(
        [sys.executable, "-m", "ed_extractor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def json_lines(stdout: str) -> list[dict[str, object]]:
    """Every stdout line parsed as one JSON object (fails on anything else on stdout)."""
    return [json.loads(line) for line in stdout.splitlines()]


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    generate_dump(
        root / "galaxy_1day.json.gz", systems=3000, seed=7, populated=False, stations=False
    )
    generate_dump(
        root / "galaxy_stations.json.gz", systems=300, seed=8, populated=True, stations=True
    )
    (root / "challenge.json.gz").write_text(
        "<!DOCTYPE html><html><body>Just a moment...</body></html>"
    )
    return root


@pytest.fixture(scope="module", params=["python", "nginx"])
def mirror(request: pytest.FixtureRequest, mirror_root: Path) -> Iterator[str]:
    """The project's local mirror serving the generated dumps (both implementations)."""
    if request.param == "nginx" and nginx_path() is None:
        pytest.skip("nginx is not installed (scripts/setup-system.sh installs it as root)")
    with start_mirror(mirror_root, prefer=request.param) as served:
        yield served.base_url


def test_fetch_stores_the_file_records_it_and_skips_it_when_unchanged(
    mirror: str, mirror_root: Path, tmp_path: Path
) -> None:
    url = f"{mirror}/galaxy_1day.json.gz"
    first = cli("fetch", url, "--dest", str(tmp_path), "--json")
    assert first.returncode == 0, first.stderr
    [outcome] = json_lines(first.stdout)
    assert set(outcome) == FETCH_KEYS
    stored = tmp_path / "galaxy_1day.json.gz"
    assert outcome["status"] == "downloaded"
    assert outcome["path"] == str(stored.resolve())
    assert outcome["regime"] == "gzip"
    assert outcome["mime_type"] == "application/gzip"
    assert outcome["error"] is None
    assert stored.read_bytes() == (mirror_root / "galaxy_1day.json.gz").read_bytes()
    assert outcome["sha256"] == sha256_of(stored)
    assert outcome["blake3"] == blake3.blake3(stored.read_bytes()).hexdigest()
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        record = store.get("galaxy_1day.json.gz")
    assert record is not None
    assert record.sha256 == sha256_of(stored)
    assert record.blake3 == outcome["blake3"]
    assert record.records == 3000
    assert record.etag == outcome["etag"]

    second = cli("fetch", url, "--dest", str(tmp_path), "--json")
    assert second.returncode == 0, second.stderr
    [again] = json_lines(second.stdout)
    assert again["status"] == "unchanged"
    assert again["sha256"] == outcome["sha256"]
    assert again["blake3"] == outcome["blake3"]
    [listed] = json_lines(cli("manifest", "--dest", str(tmp_path), "--json").stdout)
    assert listed["blake3"] == outcome["blake3"]
    written = {p.name for p in tmp_path.iterdir()} - {
        "manifest.sqlite3-wal",
        "manifest.sqlite3-shm",
    }
    assert written == {"galaxy_1day.json.gz", "manifest.sqlite3", ".ed-extractor.lock"}


@pytest.mark.parametrize("backend", ["1", "0"], ids=["native", "python"])
def test_blake3_is_recorded_unless_switched_off(
    mirror_root: Path, tmp_path: Path, backend: str
) -> None:
    with start_mirror(mirror_root, prefer="python") as served:
        url = served.url("galaxy_stations.json.gz")
        env = {"ED_EXTRACTOR_NATIVE": backend}
        on = cli("fetch", url, "--dest", str(tmp_path / "on"), "--json", env=env)
        off = cli("fetch", url, "--dest", str(tmp_path / "off"), "--json",
                  env={**env, "ED_EXTRACTOR_BLAKE3": "0"})  # fmt: skip
    data = (mirror_root / "galaxy_stations.json.gz").read_bytes()
    assert json_lines(on.stdout)[0]["blake3"] == blake3.blake3(data).hexdigest()
    assert json_lines(off.stdout)[0]["blake3"] is None
    assert json_lines(off.stdout)[0]["sha256"] == hashlib.sha256(data).hexdigest()
    with ManifestStore(tmp_path / "off" / "manifest.sqlite3") as store:
        [record] = store.records()
    assert record.blake3 is None


class _CountingHandler(StaticFileHandler):
    """The mirror's handler, counting the GET requests and body bytes it sends."""

    gets: ClassVar[list[str]] = []
    body_bytes: ClassVar[list[int]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.gets.append(self.path)
        super().do_GET()

    def send_file_body(self, file: IO[bytes], first: int, length: int) -> None:
        with self.lock:
            self.body_bytes.append(length)
        super().send_file_body(file, first, length)


def test_an_unchanged_source_costs_no_body_bytes(mirror_root: Path, tmp_path: Path) -> None:
    handler = _CountingHandler.for_root(mirror_root)
    with start_mirror(mirror_root, handler=handler) as served:
        url = served.url("galaxy_1day.json.gz")
        assert cli("fetch", url, "--dest", str(tmp_path)).returncode == 0
        size = (mirror_root / "galaxy_1day.json.gz").stat().st_size
        assert sum(_CountingHandler.body_bytes) == size + 1024  # the probe's sample, then the body
        _CountingHandler.gets.clear()
        _CountingHandler.body_bytes.clear()
        again = cli("fetch", url, "--dest", str(tmp_path), "--json")
    assert json_lines(again.stdout)[0]["status"] == "unchanged"
    assert _CountingHandler.gets == []  # HEAD alone told it: no GET at all
    assert sum(_CountingHandler.body_bytes) == 0


def test_a_damaged_or_missing_local_file_is_downloaded_again(mirror: str, tmp_path: Path) -> None:
    url = f"{mirror}/galaxy_stations.json.gz"
    assert cli("fetch", url, "--dest", str(tmp_path)).returncode == 0
    stored = tmp_path / "galaxy_stations.json.gz"
    good = stored.read_bytes()
    stored.write_bytes(good[:-10])
    [damaged] = json_lines(cli("fetch", url, "--dest", str(tmp_path), "--json").stdout)
    assert damaged["status"] == "downloaded"
    assert stored.read_bytes() == good
    stored.unlink()
    [missing] = json_lines(cli("fetch", url, "--dest", str(tmp_path), "--json").stdout)
    assert missing["status"] == "downloaded"
    assert stored.read_bytes() == good


def test_an_html_page_for_a_gz_url_fails_and_stores_nothing(mirror: str, tmp_path: Path) -> None:
    result = cli("fetch", f"{mirror}/challenge.json.gz", "--dest", str(tmp_path), "--json")
    assert result.returncode == 1
    [outcome] = json_lines(result.stdout)
    assert outcome["status"] == "failed"
    assert "application/gzip" in str(outcome["error"])
    assert "text/html" in str(outcome["error"])
    assert not (tmp_path / "challenge.json.gz").exists()
    assert not (tmp_path / "challenge.json.gz.part").exists()


def test_expect_binary_fetches_a_file_whose_name_lies(
    mirror: str, mirror_root: Path, tmp_path: Path
) -> None:
    url = f"{mirror}/challenge.json.gz"
    result = cli("fetch", url, "--expect", "binary", "--dest", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    [outcome] = json_lines(result.stdout)
    assert (outcome["status"], outcome["regime"]) == ("downloaded", "binary")
    assert outcome["mime_type"] == "text/html"
    assert (tmp_path / "challenge.json.gz").read_bytes() == (
        mirror_root / "challenge.json.gz"
    ).read_bytes()


def test_expect_overrides_the_name_both_ways(mirror: str, tmp_path: Path) -> None:
    url = f"{mirror}/galaxy_1day.json.gz"
    result = cli("fetch", url, "--expect", "json", "--dest", str(tmp_path), "--json")
    assert result.returncode == 1
    [outcome] = json_lines(result.stdout)
    assert "expected application/json" in str(outcome["error"])
    assert "application/gzip" in str(outcome["error"])
    assert not (tmp_path / "galaxy_1day.json.gz").exists()


def test_expect_is_documented_and_checked() -> None:
    assert "--expect {gzip,json,zstd,binary,bittorrent}" in cli("fetch", "--help").stdout
    result = cli("fetch", "http://127.0.0.1:9/x.gz", "--expect", "xml")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "invalid choice: 'xml'" in result.stderr


def test_probe_reports_what_the_source_is(mirror: str, mirror_root: Path) -> None:
    result = cli("probe", f"{mirror}/galaxy_1day.json.gz", "--json")
    assert result.returncode == 0, result.stderr
    [probe] = json_lines(result.stdout)
    assert set(probe) == PROBE_KEYS
    assert probe["mime_type"] == "application/gzip"
    assert probe["content_length"] == (mirror_root / "galaxy_1day.json.gz").stat().st_size
    assert probe["is_range_supported"] is True


def test_run_fetches_enabled_sources_and_reports_each(mirror: str, tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    config.write_text(
        f"""
[[source]]
url = "{mirror}/galaxy_1day.json.gz"
expect = "gzip"

[[source]]
url = "{mirror}/missing.json.gz"

[[source]]
url = "{mirror}/galaxy_stations.json.gz"
name = "stations.json.gz"
enabled = false
"""
    )
    dest = tmp_path / "data"
    result = cli("run", "--config", str(config), "--json", env={"ED_EXTRACTOR_DEST": str(dest)})
    assert result.returncode == 1  # one source failed, the other still arrived
    outcomes = {line["name"]: line for line in json_lines(result.stdout)}
    assert outcomes["galaxy_1day.json.gz"]["status"] == "downloaded"
    assert outcomes["missing.json.gz"]["status"] == "failed"
    assert "404" in str(outcomes["missing.json.gz"]["error"])
    assert "stations.json.gz" not in outcomes
    assert (dest / "galaxy_1day.json.gz").exists()

    only = cli("run", "--config", str(config), "--dest", str(dest), "--only", "stations.json.gz")
    assert only.returncode == 0, only.stderr
    assert (dest / "stations.json.gz").exists()

    listed = cli("manifest", "--dest", str(dest), "--json")
    assert listed.returncode == 0
    records = json_lines(listed.stdout)
    assert [r["name"] for r in records] == ["galaxy_1day.json.gz", "stations.json.gz"]
    assert all(FETCH_KEYS - {"status", "error", "elapsed_s"} <= set(r) for r in records)


def test_logs_go_to_stderr_as_json_lines(mirror: str, tmp_path: Path) -> None:
    result = cli("fetch", f"{mirror}/galaxy_1day.json.gz", "--dest", str(tmp_path), "--json")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["msg"] == "source downloaded" for e in events)
    assert len(json_lines(result.stdout)) == 1


_GOOD = gzip.compress(b"[\n{}\n]\n", mtime=0)


class _GzipAsHtml(QuietHandler):
    """Serves gzip bytes but calls them HTML: the Content-Type is only a hint."""

    def do_GET(self) -> None:
        body = b"\x1f\x8b" + bytes(30) if self.path.endswith("bad.gz") else _GOOD
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_lying_content_type_and_a_refused_head_still_download(tmp_path: Path) -> None:
    with serve(_GzipAsHtml) as base:
        good = cli("fetch", f"{base}/ok.json.gz", "--dest", str(tmp_path), "--json")
        bad = cli("fetch", f"{base}/bad.gz", "--dest", str(tmp_path), "--json")
    assert good.returncode == 0, good.stderr
    assert json_lines(good.stdout)[0]["regime"] == "gzip"
    assert (tmp_path / "ok.json.gz").read_bytes() == _GOOD
    assert bad.returncode == 1
    assert "gzip" in str(json_lines(bad.stdout)[0]["error"])
    assert not (tmp_path / "bad.gz").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fetch", "ftp://example.org/x.gz"], "scheme"),
        (["fetch", "http://"], "host"),
        (["fetch", "not a url"], "invalid URL"),
        (["fetch", "http://127.0.0.1:1/a.gz", "--connections", "0"], "--connections"),
        (["fetch", "http://127.0.0.1:1/a.gz", "--expect-sha256", "abc"], "SHA-256"),
        (["fetch", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b", "--name", "x"], "--name"),
        (["fetch", "http://127.0.0.1:1/a.gz", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice"),
        (["run", "--only", "nope"], "unknown sources: nope"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = cli(*args, env={"ED_EXTRACTOR_DEST": str(tmp_path)})
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    ("source", "reason"),
    [("ftp://example.org/x.gz", "unsupported scheme 'ftp'"), ("example.org/x.gz", "no scheme")],
)
def test_a_url_of_no_accepted_kind_is_told_every_kind_accepted(
    source: str, reason: str, tmp_path: Path
) -> None:
    result = cli("fetch", source, "--dest", str(tmp_path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert reason in line
    assert "http://, https://, s3:// or magnet:" in line


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser under it (``api dump`` included)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subcommand in action.choices.values():
                yield from _parsers(subcommand)


def test_every_argument_of_every_command_has_a_help_text() -> None:
    undocumented = []
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            # a subcommand's help is that of its entry in the list of subcommands
            entries = getattr(action, "_choices_actions", [action])
            undocumented += [f"{parser.prog} {e.metavar or e.dest}" for e in entries if not e.help]
    assert undocumented == []
    fetch_help = cli("fetch", "--help").stdout
    assert "SOURCE                an http(s):// URL, an s3://BUCKET/KEY" in fetch_help
    assert "--expect-sha256 HEX   fail unless" in fetch_help


def test_a_local_torrent_file_is_a_source_of_fetch(tmp_path: Path) -> None:
    """A .torrent path goes where the sources TOML's ``torrent = "path"`` goes: the torrent regime.

    tests/test_cli_torrent.py downloads one from a real peer.
    """
    not_metainfo = tmp_path / "galaxy.json.gz.torrent"
    not_metainfo.write_bytes(b"<html>not bencoded</html>")
    dest = tmp_path / "data"
    result = cli("fetch", str(not_metainfo), str(tmp_path / "gone.torrent"), "--dest", str(dest),
                 "--json")  # fmt: skip
    assert result.returncode == 1  # failed sources, not a usage error
    outcomes = {line["name"]: line for line in json_lines(result.stdout)}
    assert set(outcomes) == {"galaxy.json.gz", "gone"}  # named like the TOML's torrent sources
    assert outcomes["galaxy.json.gz"]["url"] == not_metainfo.as_uri()
    assert "not usable torrent metainfo" in str(outcomes["galaxy.json.gz"]["error"])
    assert "cannot read the torrent file" in str(outcomes["gone"]["error"])
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith("manifest")) == [
        ".ed-extractor.lock"
    ]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[[source]\nurl = 1", "line 1"),
        ('[[source]]\nurl = "https://x.org/a.gz"\ncolour = "red"', "colour"),
        ('[[source]]\nurl = "gopher://x.org/a.gz"', "scheme"),
    ],
)
def test_a_bad_config_is_one_line_on_stderr_and_exit_2(
    toml: str, message: str, tmp_path: Path
) -> None:
    config = tmp_path / "sources.toml"
    config.write_text(toml)
    result = cli("run", "--config", str(config), "--dest", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "sources.toml" in result.stderr


def test_version_names_the_active_backend() -> None:
    native = cli("--version")
    fallback = cli("--version", env={"ED_EXTRACTOR_NATIVE": "0"})
    assert native.stdout.startswith("ed-extractor ")
    assert "backend: python" in fallback.stdout
    assert "backend: native" in native.stdout


def test_a_second_run_on_a_locked_destination_fails_clearly(tmp_path: Path) -> None:
    with (tmp_path / LOCK_FILE_NAME).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = cli("fetch", "http://127.0.0.1:1/a.gz", "--dest", str(tmp_path))
    assert result.returncode == 1
    assert "another ed-extractor run" in result.stderr
