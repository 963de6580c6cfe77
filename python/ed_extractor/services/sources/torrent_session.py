"""TorrentSession: one libtorrent session downloading one torrent into a part folder, resumably."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final

from ed_extractor.errors import DeadlineError, StorageError, TransferError
from ed_extractor.services.file_transfer.base import ProgressReporter

log = logging.getLogger(__name__)

_POLL_MS: Final = 250
_RECONNECT_S: Final = 2.0  # ask the given peers again this often while none is connected
_ALERT_WAIT_S: Final = 30.0  # longest wait for a flush, resume-data or removal alert


def libtorrent() -> ModuleType:
    """The libtorrent module, imported on first use (start-up stays cheap without torrents)."""
    import libtorrent as lt

    return lt


@dataclass(frozen=True)
class TorrentOptions:
    """How the session meets the swarm: interfaces, discovery, peers, patience.

    The defaults are those of the ``ED_EXTRACTOR_BT_*`` settings; the pipeline builds these options
    from a run's settings (``pipeline.spansh_dump.torrent_options``).
    """

    listen: str = "0.0.0.0:6881,[::]:6881"
    peers: tuple[str, ...] = ()
    dht: bool = True
    lsd: bool = True
    upnp: bool = True
    natpmp: bool = True
    utp: bool = True
    stall_s: float = 300.0
    seed_s: float = 0.0
    resume_every_s: float = 2.0

    def session_settings(self) -> dict[str, Any]:
        """libtorrent's settings_pack for these options."""
        lt = libtorrent()
        category = lt.alert.category_t
        return {
            "listen_interfaces": self.listen,
            "enable_dht": self.dht,
            "enable_lsd": self.lsd,
            "enable_upnp": self.upnp,
            "enable_natpmp": self.natpmp,
            "enable_outgoing_utp": self.utp,
            "enable_incoming_utp": self.utp,
            # several peers may share one address (a host running two clients; the tests)
            "allow_multiple_connections_per_ip": True,
            "alert_mask": category.error_notification
            | category.status_notification
            | category.storage_notification,
        }


def parse_peer(peer: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as libtorrent's endpoint tuple."""
    host, _, port = peer.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TransferError(peer, "a peer must be host:port", retryable=False)
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a torrent downloads, so its resume data is saved."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class TorrentSession:
    """A libtorrent session holding one torrent; resume data goes to ``resume_file``.

    ``url`` names the source in errors. Use as a context manager; the session stops on exit.
    """

    def __init__(self, url: str, options: TorrentOptions, resume_file: Path) -> None:
        self._lt = libtorrent()
        self._url = url
        self._options = options
        self._resume_file = resume_file
        self._session: Any = self._lt.session(options.session_settings())
        self._handle: Any = None
        self._peers = [parse_peer(p) for p in options.peers]
        self._last_resume = time.monotonic()
        self._scratch = resume_file.with_name(resume_file.name + ".tmp")

    def __enter__(self) -> TorrentSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None and self._handle.is_valid():
            self._session.remove_torrent(self._handle)
        del self._session

    @property
    def handle(self) -> Any:
        """The torrent's libtorrent handle (after ``add``)."""
        return self._handle

    def add(self, params: Any, save_path: Path, extra_peers: tuple[str, ...] = ()) -> None:
        """Add the torrent, continuing from the saved resume data when it is for the same one."""
        resumed = self._load_resume(params)
        if resumed is not None:
            params = resumed
            log.info("continuing a kept torrent download", extra={"url": self._url})
        params.save_path = str(save_path)
        params.flags &= ~(self._lt.torrent_flags.auto_managed | self._lt.torrent_flags.paused)
        self._scratch = save_path / ".resume.tmp"  # no payload name starts with a dot
        self._peers += [parse_peer(p) for p in extra_peers]
        self._handle = self._session.add_torrent(params)
        self._connect_peers()

    def _load_resume(self, params: Any) -> Any | None:
        try:
            data = self._resume_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(self._resume_file, f"cannot read ({exc.strerror or exc})") from exc
        try:
            resumed = self._lt.read_resume_data(data)
        except RuntimeError:
            log.warning("unreadable torrent resume data; starting over",
                        extra={"path": str(self._resume_file)})  # fmt: skip
            return None
        if str(info_hash_of(resumed).get_best()) != str(info_hash_of(params).get_best()):
            return None
        if resumed.ti is None:
            resumed.ti = params.ti
        return resumed

    def _connect_peers(self) -> None:
        for endpoint in self._peers:
            self._handle.connect_peer(endpoint)

    def wait_for_metadata(self, deadline: float | None) -> Any:
        """The torrent_info once known (a magnet link asks its peers for it)."""
        last_progress = time.monotonic()
        while not self._handle.status().has_metadata:
            self._tick(deadline, last_progress)
        return self._handle.torrent_file()

    def download(self, name: str, progress: ProgressReporter, deadline: float | None) -> int:
        """Run until every piece passed its hash; return the payload bytes downloaded."""
        status = self._handle.status()
        done = status.total_wanted_done
        progress.start(name, status.total_wanted, already=done)
        last_progress = time.monotonic()
        last_connect = last_progress
        try:
            with _sigterm_interrupts():
                while True:
                    status = self._handle.status()
                    if status.errc.value():
                        raise StorageError(
                            status.save_path, f"torrent error: {status.errc.message()}"
                        )
                    if status.total_wanted_done > done:
                        progress.advance(status.total_wanted_done - done)
                        done = status.total_wanted_done
                        last_progress = time.monotonic()
                    if status.is_finished:
                        break
                    now = time.monotonic()
                    if status.num_peers == 0 and now - last_connect > _RECONNECT_S:
                        self._connect_peers()
                        last_connect = now
                    self._tick(deadline, last_progress)
        except BaseException:
            self.save_resume()
            raise
        finally:
            progress.stop()
        return int(status.total_payload_download)

    def _tick(self, deadline: float | None, last_progress: float) -> None:
        """Handle the alerts of one poll; raise on the deadline or a stall."""
        self._session.wait_for_alert(_POLL_MS)
        for alert in self._session.pop_alerts():
            self._on_alert(alert)
        now = time.monotonic()
        if now - self._last_resume > self._options.resume_every_s:
            self._last_resume = now
            if self._handle.need_save_resume_data():
                self._handle.save_resume_data()
        if deadline is not None and now > deadline:
            raise DeadlineError(self._url, "run deadline reached; the part folder is kept")
        if now - last_progress > self._options.stall_s:
            status = self._handle.status()
            raise TransferError(
                self._url,
                f"no progress for {self._options.stall_s:g} s ({status.total_wanted_done} of "
                f"{status.total_wanted} bytes, {status.num_peers} peers); the part folder is kept",
                retryable=False,
            )

    def _on_alert(self, alert: Any) -> None:
        lt = self._lt
        if isinstance(alert, lt.save_resume_data_alert):
            self._write_resume(alert.params)
        elif isinstance(alert, lt.file_error_alert):
            raise StorageError(alert.filename(), f"torrent storage error: {alert.message()}")
        elif isinstance(alert, lt.hash_failed_alert):
            log.warning("a piece failed its hash; asking another peer", extra={"url": self._url})

    def _write_resume(self, params: Any) -> None:
        data = self._lt.write_resume_data_buf(params)
        try:
            self._scratch.write_bytes(data)
            os.replace(self._scratch, self._resume_file)
        except OSError as exc:
            log.warning("cannot save torrent resume data: %s", exc)

    def save_resume(self) -> None:
        """Save resume data now and wait (briefly) for it to reach the file."""
        if self._handle is None or not self._handle.is_valid():
            return
        if not self._handle.status().has_metadata:
            return
        self._handle.save_resume_data(self._lt.torrent_handle.flush_disk_cache)
        self._wait_for(self._lt.save_resume_data_alert, self._lt.save_resume_data_failed_alert)

    def flush_and_close(self) -> None:
        """Let every written byte reach the files, then close them (remove the torrent).

        Reading right after "finished" can see stale bytes; after the cache-flushed alert and the
        removal the files are complete and no longer held open.
        """
        self._handle.flush_cache()
        self._wait_for(self._lt.cache_flushed_alert)
        self._session.remove_torrent(self._handle)
        self._wait_for(self._lt.torrent_removed_alert)
        self._handle = None

    def _wait_for(self, *kinds: type) -> None:
        stop = time.monotonic() + _ALERT_WAIT_S
        while time.monotonic() < stop:
            self._session.wait_for_alert(_POLL_MS)
            for alert in self._session.pop_alerts():
                if isinstance(alert, self._lt.save_resume_data_alert):
                    self._write_resume(alert.params)
                if isinstance(alert, kinds):
                    return
        raise TransferError(self._url, "libtorrent did not answer in time", retryable=True)

    def seed(
        self,
        info: Any,
        renamed: dict[int, str],
        save_path: Path,
        seconds: float,
        deadline: float | None,
    ) -> None:
        """Seed the stored files for ``seconds`` (bounded by the deadline), then leave."""
        params = self._lt.add_torrent_params()
        params.ti = info
        params.renamed_files = renamed
        params.save_path = str(save_path)
        params.flags |= self._lt.torrent_flags.seed_mode
        params.flags &= ~(self._lt.torrent_flags.auto_managed | self._lt.torrent_flags.paused)
        self._handle = self._session.add_torrent(params)
        stop = time.monotonic() + seconds
        if deadline is not None:
            stop = min(stop, deadline)
        while time.monotonic() < stop:
            self._session.wait_for_alert(_POLL_MS)
            self._session.pop_alerts()


def info_hash_of(params: Any) -> Any:
    """The info-hashes (v1 and/or v2) of add_torrent_params, from its metadata when it has it."""
    return params.ti.info_hashes() if params.ti is not None else params.info_hashes
