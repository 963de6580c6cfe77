"""DownloadContext: the registry that picks a content regime by the sniffed MIME type.

``select`` pairs it with the source of the URL (``Sources``, by URL kind; torrent metainfo means
the BitTorrent source): the result is the ``DownloadStrategy`` of one download.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.regimes import (
    BinaryRegime,
    GzipRegime,
    JsonRegime,
    ZstdRegime,
)
from ed_extractor.services.source_probe.models import ProbeResult
from ed_extractor.services.source_probe.sniff import GZIP, JSON, ZSTD
from ed_extractor.services.sources import Source, Sources
from ed_extractor.vocabulary import Regime

DEFAULT_REGIMES: dict[str, type[BinaryRegime]] = {
    GZIP: GzipRegime,
    JSON: JsonRegime,
    ZSTD: ZstdRegime,
}


@dataclass(frozen=True)
class SourceDownload:
    """One download: a source and the content regime whose check its bytes go through."""

    source: Source
    content: BinaryRegime
    checks: DownloadContext
    name: Regime

    def download(
        self, client: httpx.Client, request: DownloadRequest, progress: ProgressReporter
    ) -> DownloadResult:
        """Fetch ``request`` from the source, checked as the content regime says (unless off)."""
        check = self.content.content_check(request) if request.verify else None
        return self.source.download(client, request, check, self.checks.check_for, progress)


class DownloadContext:
    """Maps canonical MIME types to content regimes; anything unregistered is binary."""

    def __init__(self, *, sources: Sources | None = None) -> None:
        self._registry: dict[str, type[BinaryRegime]] = dict(DEFAULT_REGIMES)
        self._sources = sources or Sources()

    @property
    def sources(self) -> Sources:
        """The run's sources, by URL kind."""
        return self._sources

    def register(self, mime_type: str, regime: type[BinaryRegime]) -> None:
        """Use ``regime`` for content sniffed as ``mime_type`` (replacing any earlier choice)."""
        self._registry[mime_type] = regime

    def regime_for(self, mime_type: str) -> type[BinaryRegime]:
        """The content regime registered for ``mime_type``, else BinaryRegime."""
        return self._registry.get(mime_type, BinaryRegime)

    def check_for(self, mime_type: str, request: DownloadRequest) -> ContentCheck | None:
        """The content check of ``mime_type`` for ``request`` (None for binary)."""
        return self.regime_for(mime_type)().content_check(request)

    def select(self, probe: ProbeResult) -> SourceDownload:
        """The download of what the probe found: its URL's source, its sniffed type's check."""
        return self.select_for(probe.url, probe.mime_type)

    def select_for(self, url: str, mime_type: str) -> SourceDownload:
        """The download of ``url`` serving ``mime_type`` (torrent metainfo: the swarm)."""
        content = self.regime_for(mime_type)()
        source = self._sources.for_content(url, mime_type)
        return SourceDownload(source, content, self, source.regime(content.name))
