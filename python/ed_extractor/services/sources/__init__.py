"""Where bytes come from: one Source per URL kind (HTTP(S), S3, BitTorrent), chosen from one table.

A Source supplies what depends on how bytes arrive: its probe (a HEAD and the 1 KiB sample; a
torrent has nothing to ask before its body), its validator, and the download, which for HTTP and
S3 hands the range engine a range opener. What the bytes must be (gzip, JSON, zstd) is the
content check, chosen by sniffed type in ``DownloadContext`` and handed to every source. Adding a
kind of source is one module with a ``Source`` and one entry in ``SOURCE_KINDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ed_extractor.paths import is_magnet
from ed_extractor.services.s3.location import is_s3_url
from ed_extractor.services.source_probe.sniff import BITTORRENT
from ed_extractor.services.sources.base import CheckLookup, Source

if TYPE_CHECKING:
    from ed_extractor.services.s3.access import S3Access
    from ed_extractor.services.sources.torrent_session import TorrentOptions


def _is_torrent(url: str) -> bool:
    """A magnet link, or a local torrent file (``file:`` URL): the swarm, not a server, to ask."""
    return is_magnet(url) or url.startswith("file:")


@dataclass(frozen=True)
class SourceOptions:
    """What the sources of a run are built with: S3 access and how torrents meet the swarm."""

    s3: S3Access | None = None
    torrent: TorrentOptions | None = None


def _s3_source(options: SourceOptions) -> Source:
    from ed_extractor.services.s3.access import S3Access
    from ed_extractor.services.sources.s3 import S3Source

    return S3Source(options.s3 or S3Access())


def _bittorrent_source(options: SourceOptions) -> Source:
    from ed_extractor.services.sources.bittorrent import BitTorrentSource

    return BitTorrentSource(options.torrent)


def _http_source(options: SourceOptions) -> Source:
    from ed_extractor.services.sources.http import HttpSource

    return HttpSource()


#: The table: the first kind whose test accepts a URL is its source (HTTP(S) takes the rest).
SOURCE_KINDS: Final[
    tuple[tuple[str, Callable[[str], bool], Callable[[SourceOptions], Source]], ...]
] = (
    ("s3", is_s3_url, _s3_source),
    ("bittorrent", _is_torrent, _bittorrent_source),
    ("http", lambda url: True, _http_source),
)
TORRENT_KIND: Final = "bittorrent"  # the kind that serves torrent metainfo's payload


class Sources:
    """The sources of one run, each built on first use (one instance per kind)."""

    def __init__(
        self, *, s3: S3Access | None = None, torrent: TorrentOptions | None = None
    ) -> None:
        self._options = SourceOptions(s3, torrent)
        self._built: dict[str, Source] = {}

    def _of_kind(self, kind: str) -> Source:
        if kind not in self._built:
            factory = next(build for name, _, build in SOURCE_KINDS if name == kind)
            self._built[kind] = factory(self._options)
        return self._built[kind]

    def for_url(self, url: str) -> Source:
        """The source of ``url``: the first kind of the table that accepts it."""
        return self._of_kind(next(kind for kind, matches, _ in SOURCE_KINDS if matches(url)))

    def for_content(self, url: str, mime_type: str) -> Source:
        """The source of ``url`` serving ``mime_type``: torrent metainfo means the swarm."""
        return self._of_kind(TORRENT_KIND) if mime_type == BITTORRENT else self.for_url(url)


__all__ = ["SOURCE_KINDS", "CheckLookup", "Source", "SourceOptions", "Sources"]
