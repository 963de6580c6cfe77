"""``fetch PATH.torrent``: a local torrent file on the command line, downloaded from a real peer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ed_extractor.demo.generator import generate_dump
from ed_extractor.manifest import ManifestStore
from tests.test_cli import cli, json_lines, sha256_of
from tests.torrent_peers import LOOPBACK_ENV, make_torrent, seeding

pytestmark = pytest.mark.slow


def test_a_torrent_path_is_fetched_like_the_sources_files_torrent_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    payload = seed / "galaxy_1day.json.gz"
    generate_dump(payload, systems=1000, seed=3, populated=False, stations=False, workers=1)
    metainfo = make_torrent(payload, "hybrid")
    (tmp_path / "galaxy.torrent").write_bytes(metainfo)
    monkeypatch.chdir(tmp_path)  # a relative path is taken from the working folder
    dest = tmp_path / "data"
    with seeding(metainfo, seed) as seeder:
        first = cli("fetch", "galaxy.torrent", "--dest", str(dest), "--json",
                    env={**LOOPBACK_ENV, "ED_EXTRACTOR_BT_PEERS": seeder.endpoint})  # fmt: skip
    assert first.returncode == 0, first.stderr
    [line] = json_lines(first.stdout)
    stored = dest / "galaxy_1day.json.gz"  # the torrent's own file name: the source names none
    assert (line["status"], line["regime"], line["name"]) == (
        "downloaded", "bittorrent", "galaxy_1day.json.gz",
    )  # fmt: skip
    assert line["url"] == (tmp_path / "galaxy.torrent").as_uri()
    assert line["sha256"] == sha256_of(payload) == sha256_of(stored)
    with ManifestStore(dest / "manifest.sqlite3") as store:
        record = store.get("galaxy_1day.json.gz")
    assert record is not None
    assert record.regime == "bittorrent"
    assert str(record.etag).startswith("btih:")
    assert list(dest.glob("*.part*")) == []

    # the seeder is gone: the same info-hash with the file intact needs no peer
    again = cli("fetch", str(tmp_path / "galaxy.torrent"), "--dest", str(dest), "--json",
                env=LOOPBACK_ENV)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json_lines(again.stdout)[0]["status"] == "unchanged"


def test_a_torrent_path_with_a_name_is_stored_under_that_name(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    payload = seed / "galaxy_1day.json.gz"
    generate_dump(payload, systems=300, seed=5, populated=False, stations=False, workers=1)
    metainfo = make_torrent(payload, "v1")
    torrent = tmp_path / "galaxy.torrent"
    torrent.write_bytes(metainfo)
    dest = tmp_path / "data"
    with seeding(metainfo, seed) as seeder:
        peers = {**LOOPBACK_ENV, "ED_EXTRACTOR_BT_PEERS": seeder.endpoint}
        result = cli("fetch", str(torrent), "--name", "today.json.gz", "--dest", str(dest),
                     "--json", env=peers)  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["name"], line["regime"]) == ("today.json.gz", "bittorrent")
    assert sha256_of(dest / "today.json.gz") == sha256_of(payload)
