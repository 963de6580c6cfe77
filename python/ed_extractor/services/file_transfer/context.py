"""DownloadContext: the registry that picks a download regime by the sniffed MIME type."""

from __future__ import annotations

from ed_extractor.services.file_transfer.base import DownloadStrategy
from ed_extractor.services.file_transfer.regimes import (
    BinaryRegime,
    BitTorrentRegime,
    GzipRegime,
    JsonRegime,
    ZstdRegime,
)
from ed_extractor.services.source_probe.models import ProbeResult
from ed_extractor.services.source_probe.sniff import BITTORRENT, GZIP, JSON, ZSTD

DEFAULT_REGIMES: dict[str, type[DownloadStrategy]] = {
    GZIP: GzipRegime,
    JSON: JsonRegime,
    ZSTD: ZstdRegime,
    BITTORRENT: BitTorrentRegime,
}


class DownloadContext:
    """Maps canonical MIME types to regimes; anything unregistered is downloaded as binary."""

    def __init__(self) -> None:
        self._registry: dict[str, type[DownloadStrategy]] = dict(DEFAULT_REGIMES)

    def register(self, mime_type: str, regime: type[DownloadStrategy]) -> None:
        """Use ``regime`` for content sniffed as ``mime_type`` (replacing any earlier choice)."""
        self._registry[mime_type] = regime

    def regime_for(self, mime_type: str) -> type[DownloadStrategy]:
        """The regime class registered for ``mime_type``, else BinaryRegime."""
        return self._registry.get(mime_type, BinaryRegime)

    def select(self, probe: ProbeResult) -> DownloadStrategy:
        """A fresh regime for the content the probe sniffed."""
        return self.regime_for(probe.mime_type)()
