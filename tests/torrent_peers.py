"""Real BitTorrent peers on 127.0.0.1 for tests: torrents, libtorrent and aria2 seeders."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import libtorrent as lt

TorrentKind = Literal["v1", "v2", "hybrid"]

_FLAGS: dict[TorrentKind, int] = {
    "v1": lt.create_torrent.v1_only,
    "v2": lt.create_torrent.v2_only,
    "hybrid": 0,
}

# Loopback peers: no discovery, no port mapping, TCP only (uTP on loopback is ten times slower).
LOOPBACK_ENV = {
    "ED_EXTRACTOR_BT_LISTEN": "127.0.0.1:0",
    "ED_EXTRACTOR_BT_DHT": "0",
    "ED_EXTRACTOR_BT_LSD": "0",
    "ED_EXTRACTOR_BT_UPNP": "0",
    "ED_EXTRACTOR_BT_NATPMP": "0",
    "ED_EXTRACTOR_BT_UTP": "0",
}

_SESSION: Any = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
}


def make_torrent(content: Path, kind: TorrentKind = "v1", piece_size: int = 0) -> bytes:
    """The metainfo of ``content`` (a file, or a folder for a multi-file torrent)."""
    creator = lt.create_torrent(lt.list_files(str(content)), piece_size, flags=_FLAGS[kind])
    lt.set_piece_hashes(creator, str(content.parent))
    return bytes(lt.bencode(creator.generate()))


def magnet_of(metainfo: bytes, name: str | None = None) -> str:
    """A magnet link for the torrent (info-hashes only, no trackers)."""
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(metainfo)
    link = str(lt.make_magnet_uri(params.ti))
    return link if name is None else f"{link.split('&dn=')[0]}&dn={name}"


class Seeder:
    """A libtorrent session on 127.0.0.1:0 seeding one torrent from ``save_path``."""

    def __init__(
        self,
        metainfo: bytes,
        save_path: Path,
        *,
        upload_limit: int = 0,
    ) -> None:
        self.session: Any = lt.session(_SESSION)
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(metainfo)
        params.save_path = str(save_path)
        params.upload_limit = upload_limit
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        self.handle: Any = self.session.add_torrent(params)
        deadline = time.monotonic() + 60
        while self.handle.status().state != lt.torrent_status.seeding:
            if time.monotonic() > deadline:
                raise RuntimeError(f"seeder never started seeding: {self.handle.status().state}")
            time.sleep(0.05)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` to give the downloader as a peer."""
        return f"127.0.0.1:{self.session.listen_port()}"

    def stop(self) -> None:
        """Leave the swarm: the peer is gone."""
        self.session.remove_torrent(self.handle)
        self.session.pause()
        del self.session


@contextmanager
def seeding(metainfo: bytes, save_path: Path, **options: Any) -> Iterator[Seeder]:
    """A Seeder for the duration of the block."""
    seeder = Seeder(metainfo, save_path, **options)
    try:
        yield seeder
    finally:
        if hasattr(seeder, "session"):
            seeder.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def aria2_seeding(torrent_file: Path, save_path: Path) -> Iterator[str]:
    """``aria2c -V --seed-ratio=0.0`` seeding ``torrent_file``; yields its ``127.0.0.1:PORT``."""
    binary = shutil.which("aria2c")
    if binary is None:
        raise RuntimeError("aria2c is missing (scripts/setup-system.sh installs it)")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary, "-V", "--seed-ratio=0.0", f"--dir={save_path}", f"--listen-port={port}",
            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--bt-tracker-connect-timeout=1",
            "--quiet=true", "--disable-ipv6=true", str(torrent_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("aria2c did not start seeding") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
