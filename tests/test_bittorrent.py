"""The BitTorrent regime against real peers on 127.0.0.1: libtorrent and aria2 seeders."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import blake3
import libtorrent as lt
import pytest

from ed_extractor.demo.generator import generate_dump
from ed_extractor.demo.mirror import start_mirror
from ed_extractor.manifest import ManifestStore
from tests.httpd import QuietHandler, serve
from tests.test_cli import cli, json_lines, sha256_of
from tests.torrent_peers import (
    LOOPBACK_ENV,
    TorrentKind,
    aria2_seeding,
    magnet_of,
    make_torrent,
    seeding,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated Spansh-style dump (about 3 MB), alone in its seeding folder."""
    root = tmp_path_factory.mktemp("seed")
    path = root / "galaxy_1day.json.gz"
    generate_dump(path, systems=3000, seed=7, populated=False, stations=False, workers=1)
    return path


def peers_env(*endpoints: str, **extra: str) -> dict[str, str]:
    return {**LOOPBACK_ENV, "ED_EXTRACTOR_BT_PEERS": ",".join(endpoints), **extra}


def write_sources(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
def test_a_local_torrent_downloads_exact_bytes_and_is_unchanged_without_peers(
    kind: TorrentKind, dump: Path, tmp_path: Path
) -> None:
    metainfo = make_torrent(dump, kind)
    torrent = tmp_path / "galaxy.torrent"
    torrent.write_bytes(metainfo)
    dest = tmp_path / "data"
    with seeding(metainfo, dump.parent) as seeder:
        config = write_sources(
            tmp_path / "sources.toml",
            f'[[source]]\ntorrent = "galaxy.torrent"\npeers = ["{seeder.endpoint}"]\n',
        )
        first = cli("run", "--config", str(config), "--dest", str(dest), "--json",
                    env=LOOPBACK_ENV)  # fmt: skip
    assert first.returncode == 0, first.stderr
    [line] = json_lines(first.stdout)
    stored = dest / "galaxy_1day.json.gz"  # the torrent's own file name: the source names none
    assert line["status"] == "downloaded"
    assert line["name"] == "galaxy_1day.json.gz"
    assert line["regime"] == "bittorrent"
    assert line["mime_type"] == "application/gzip"
    assert line["sha256"] == sha256_of(dump) == sha256_of(stored)
    assert line["blake3"] == blake3.blake3(dump.read_bytes()).hexdigest()
    with ManifestStore(dest / "manifest.sqlite3") as store:
        record = store.get("galaxy_1day.json.gz")
    assert record is not None
    assert record.blake3 == line["blake3"]
    assert stored.read_bytes() == dump.read_bytes()
    assert str(line["etag"]).startswith("btmh:1220" if kind == "v2" else "btih:")
    assert list(dest.glob("*.part*")) == []
    # the seeder is gone: the same info-hash and an intact file need no peer
    again = cli("run", "--config", str(config), "--dest", str(dest), "--json", env=LOOPBACK_ENV)
    assert again.returncode == 0, again.stderr
    assert json_lines(again.stdout)[0]["status"] == "unchanged"


def test_a_magnet_link_gets_its_metadata_from_the_seeder(dump: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(dump, "hybrid")
    dest = tmp_path / "data"
    with seeding(metainfo, dump.parent) as seeder:
        result = cli("fetch", magnet_of(metainfo, "galaxy_1day.json.gz"), "--dest", str(dest),
                     "--json", env=peers_env(seeder.endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert line["status"] == "downloaded"
    assert line["sha256"] == sha256_of(dump) == sha256_of(dest / "galaxy_1day.json.gz")
    unchanged = cli("fetch", magnet_of(metainfo, "galaxy_1day.json.gz"), "--dest", str(dest),
                    "--json", env=LOOPBACK_ENV)  # fmt: skip
    assert json_lines(unchanged.stdout)[0]["status"] == "unchanged"


class TorrentHandler(QuietHandler):
    """Serves one torrent at any path, as a generic download with a misleading type."""

    metainfo = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(self.metainfo)))
        self.end_headers()
        self.wfile.write(self.metainfo)


def test_a_url_serving_metainfo_is_recognised_by_its_content(dump: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(dump, "v1")
    handler = type("Handler", (TorrentHandler,), {"metainfo": metainfo})
    dest = tmp_path / "data"
    with seeding(metainfo, dump.parent) as seeder, serve(handler) as base:
        result = cli("fetch", f"{base}/download?id=3", "--dest", str(dest), "--json",
                     env=peers_env(seeder.endpoint, ED_EXTRACTOR_BT_SEED_S="1.5"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["status"], line["regime"]) == ("downloaded", "bittorrent")
    assert float(str(line["elapsed_s"])) >= 1.5  # it stayed to seed
    assert sha256_of(dest / "galaxy_1day.json.gz") == sha256_of(dump)


def test_a_torrent_on_the_demo_mirror_downloads(dump: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(dump, "hybrid")
    mirror_root = tmp_path / "mirror"
    mirror_root.mkdir()
    (mirror_root / "galaxy_1day.json.gz.torrent").write_bytes(metainfo)
    dest = tmp_path / "data"
    with seeding(metainfo, dump.parent) as seeder, start_mirror(mirror_root) as mirror:
        result = cli("fetch", mirror.url("galaxy_1day.json.gz.torrent"), "--dest", str(dest),
                     "--json", env=peers_env(seeder.endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["name"] == "galaxy_1day.json.gz"
    assert sha256_of(dest / "galaxy_1day.json.gz") == sha256_of(dump)


def test_a_multi_file_torrent_is_a_folder_with_one_record_per_file(
    dump: Path, tmp_path: Path
) -> None:
    content = tmp_path / "seed" / "dumps"
    (content / "daily").mkdir(parents=True)
    (content / "daily" / "galaxy_1day.json.gz").write_bytes(dump.read_bytes())
    (content / "systems.json").write_text('[\n{"id64": 1},\n{"id64": 2}\n]\n')
    metainfo = make_torrent(content, "hybrid")
    dest = tmp_path / "data"
    with seeding(metainfo, content.parent) as seeder:
        result = cli("fetch", magnet_of(metainfo), "--name", "spansh", "--dest", str(dest),
                     "--json", env=peers_env(seeder.endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["name"], line["status"], line["path"]) == (
        "spansh",
        "downloaded",
        str(dest / "spansh"),
    )
    with ManifestStore(dest / "manifest.sqlite3") as store:
        records = {r.name: r for r in store.records()}
    assert sorted(records) == ["spansh/daily/galaxy_1day.json.gz", "spansh/systems.json"]
    assert records["spansh/systems.json"].records == 2
    assert records["spansh/daily/galaxy_1day.json.gz"].sha256 == sha256_of(dump)
    assert (dest / "spansh" / "systems.json").read_bytes() == (
        content / "systems.json"
    ).read_bytes()


def _corrupt_in_place(path: Path) -> None:
    """Flip the first byte of every 64 KiB; the seeder that checked the file does not notice."""
    with path.open("r+b") as file:
        for offset in range(0, path.stat().st_size, 64 << 10):
            file.seek(offset)
            byte = file.read(1)
            file.seek(offset)
            file.write(bytes([byte[0] ^ 0xFF]))


def test_a_peer_serving_bad_pieces_next_to_a_good_one(dump: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(dump, "v1", piece_size=64 << 10)
    bad_copy = tmp_path / "bad" / dump.name
    bad_copy.parent.mkdir()
    bad_copy.write_bytes(dump.read_bytes())
    dest = tmp_path / "data"
    # The good peer is slowed down so that the bad one, unlimited, surely serves pieces too.
    with (
        seeding(metainfo, bad_copy.parent) as bad,
        seeding(metainfo, dump.parent, upload_limit=512 << 10) as good,
    ):
        _corrupt_in_place(bad_copy)
        result = cli("fetch", magnet_of(metainfo, "galaxy_1day.json.gz"), "--dest", str(dest),
                     "--json", env=peers_env(bad.endpoint, good.endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a piece failed its hash" in result.stderr  # the bad peer did take part
    assert sha256_of(dest / "galaxy_1day.json.gz") == sha256_of(dump)


def _hostile_torrent(seed_root: Path) -> bytes:
    """A v1 torrent whose names try to leave the destination: ``..``, absolute, over-long."""
    piece = 16 << 10
    names = [[b"..", b"..", b"escape.json"], [b"/", b"etc", b"passwd"], [b"x" * 300 + b".json"]]
    bodies = [b'{"a": 1}\n', b"root:x:0:0\n", b"[1, 2]\n"]
    joined = b"".join(bodies)
    pieces = b"".join(
        hashlib.sha1(joined[i : i + piece]).digest() for i in range(0, len(joined), piece)
    )
    info: Any = {
        b"name": b"../../up",
        b"piece length": piece,
        b"pieces": pieces,
        b"files": [{b"length": len(b), b"path": n} for b, n in zip(bodies, names, strict=True)],
    }
    metainfo = bytes(lt.bencode({b"info": info}))
    layout = lt.torrent_info(metainfo).layout()
    for index, body in enumerate(bodies):  # where libtorrent itself puts them, for the seeder
        path = seed_root / layout.file_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return metainfo


def test_hostile_names_stay_inside_the_destination(tmp_path: Path) -> None:
    seed_root = tmp_path / "seed"
    metainfo = _hostile_torrent(seed_root)
    dest = tmp_path / "box" / "data"
    dest.mkdir(parents=True)
    with seeding(metainfo, seed_root) as seeder:
        result = cli("fetch", magnet_of(metainfo), "--name", "hostile", "--dest", str(dest),
                     "--json", env=peers_env(seeder.endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    outside = [p for p in (tmp_path / "box").rglob("*") if not p.is_relative_to(dest)]
    assert outside == []
    with ManifestStore(dest / "manifest.sqlite3") as store:
        records = store.records()
    assert len(records) == 3
    for record in records:
        assert record.name.startswith("hostile/")
        assert Path(record.path).resolve().is_relative_to(dest / "hostile")
        assert all(len(part.encode()) <= 255 for part in Path(record.path).parts)


def test_an_aria2_seeder_serves_a_v1_torrent(dump: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(dump, "v1")
    torrent = tmp_path / "galaxy.torrent"
    torrent.write_bytes(metainfo)
    dest = tmp_path / "data"
    with aria2_seeding(torrent, dump.parent) as endpoint:
        result = cli("fetch", magnet_of(metainfo, "galaxy_1day.json.gz"), "--dest", str(dest),
                     "--json", env=peers_env(endpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sha256_of(dest / "galaxy_1day.json.gz") == sha256_of(dump)


@pytest.fixture
def big_payload(tmp_path: Path) -> Path:
    path = tmp_path / "seed" / "big.bin"
    path.parent.mkdir()
    path.write_bytes(os.urandom(8 << 20))
    return path


def _start_fetch(link: str, dest: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ed_extractor", "fetch", link, "--dest", str(dest), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _wait_for_part_bytes(part: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = [p for p in part.rglob("*") if p.is_file()] if part.exists() else []
        resume = part.with_name(part.name + ".resume")
        if resume.exists() and sum(p.stat().st_size for p in files) >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"{part} never reached {at_least} bytes with resume data")


def test_kill_9_mid_download_then_the_next_run_continues(big_payload: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(big_payload, "v1", piece_size=64 << 10)
    link = magnet_of(metainfo, "big.bin")
    dest = tmp_path / "data"
    size = big_payload.stat().st_size
    with seeding(metainfo, big_payload.parent, upload_limit=1 << 20) as seeder:
        env = peers_env(seeder.endpoint)
        process = _start_fetch(link, dest, env)
        _wait_for_part_bytes(dest / "big.bin.part", 2 << 20)
        time.sleep(2.5)  # a periodic resume save after those bytes
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (dest / "big.bin").exists()
        seeder.handle.set_upload_limit(0)
        result = cli("fetch", link, "--dest", str(dest), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert sha256_of(dest / "big.bin") == sha256_of(big_payload)
    with ManifestStore(dest / "manifest.sqlite3") as store:
        [attempt] = store.history("big.bin")
    assert 0 < attempt.bytes_transferred < size - (1 << 20)


def test_sigterm_saves_resume_data_and_leaves_promptly(big_payload: Path, tmp_path: Path) -> None:
    metainfo = make_torrent(big_payload, "v1", piece_size=64 << 10)
    dest = tmp_path / "data"
    with seeding(metainfo, big_payload.parent, upload_limit=1 << 20) as seeder:
        env = peers_env(seeder.endpoint, ED_EXTRACTOR_BT_STALL_S="60")
        process = _start_fetch(magnet_of(metainfo, "big.bin"), dest, env)
        _wait_for_part_bytes(dest / "big.bin.part", 1 << 20)
        resume = dest / "big.bin.part.resume"
        before = resume.stat().st_mtime_ns
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert resume.stat().st_mtime_ns > before  # written on the way out
    assert (dest / "big.bin.part").is_dir()
    assert not (dest / "big.bin").exists()


def test_a_stalled_swarm_fails_within_the_timeout_and_keeps_the_part(
    big_payload: Path, tmp_path: Path
) -> None:
    metainfo = make_torrent(big_payload, "v1", piece_size=64 << 10)
    dest = tmp_path / "data"
    with seeding(metainfo, big_payload.parent, upload_limit=1 << 20) as seeder:
        env = peers_env(
            seeder.endpoint, ED_EXTRACTOR_BT_STALL_S="3", ED_EXTRACTOR_RETRY_ATTEMPTS="1"
        )
        process = _start_fetch(magnet_of(metainfo, "big.bin"), dest, env)
        _wait_for_part_bytes(dest / "big.bin.part", 1 << 20)
        seeder.stop()
        gone = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
    waited = time.monotonic() - gone
    assert process.returncode == 1, stderr
    [line] = json_lines(stdout)
    assert line["status"] == "failed"
    assert "no progress for 3 s" in str(line["error"])
    assert waited < 15
    assert (dest / "big.bin.part").is_dir()
    assert (dest / "big.bin.part.resume").is_file()
    assert not (dest / "big.bin").exists()


def test_a_torrent_larger_than_max_bytes_is_refused_before_any_payload(
    dump: Path, tmp_path: Path
) -> None:
    (tmp_path / "galaxy.torrent").write_bytes(make_torrent(dump, "v1"))
    config = write_sources(
        tmp_path / "sources.toml", '[[source]]\ntorrent = "galaxy.torrent"\nmax_bytes = 1000\n'
    )
    dest = tmp_path / "data"
    result = cli("run", "--config", str(config), "--dest", str(dest), "--json", env=LOOPBACK_ENV)
    assert result.returncode == 1
    [line] = json_lines(result.stdout)
    assert "exceeds max_bytes (1000)" in str(line["error"])
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(("manifest", "."))) == []


def test_metainfo_that_libtorrent_refuses_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.torrent").write_bytes(b"d4:infod4:name1:a6:lengthi-5eee")
    config = write_sources(tmp_path / "sources.toml", '[[source]]\ntorrent = "bad.torrent"\n')
    dest = tmp_path / "data"
    result = cli("run", "--config", str(config), "--dest", str(dest), "--json", env=LOOPBACK_ENV)
    assert result.returncode == 1
    [line] = json_lines(result.stdout)
    assert "not usable torrent metainfo" in str(line["error"])
    assert "\n" not in str(line["error"])


def test_a_magnet_link_cannot_be_probed() -> None:
    result = cli("probe", magnet_of(make_torrent(Path(__file__), "v1")))
    assert result.returncode == 2
    assert "cannot be probed" in result.stderr
