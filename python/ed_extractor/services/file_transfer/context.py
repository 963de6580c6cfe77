"""DownloadContext: the registry that picks a download regime by the sniffed MIME type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ed_extractor.services.file_transfer.base import DownloadStrategy
from ed_extractor.services.file_transfer.regimes import (
    BinaryRegime,
    BitTorrentRegime,
    GzipRegime,
    JsonRegime,
    ZstdRegime,
)
from ed_extractor.services.s3.location import is_s3_url
from ed_extractor.services.source_probe.models import ProbeResult
from ed_extractor.services.source_probe.sniff import BITTORRENT, GZIP, JSON, ZSTD

if TYPE_CHECKING:
    from ed_extractor.services.s3.access import S3Access

DEFAULT_REGIMES: dict[str, type[DownloadStrategy]] = {
    GZIP: GzipRegime,
    JSON: JsonRegime,
    ZSTD: ZstdRegime,
    BITTORRENT: BitTorrentRegime,
}


class DownloadContext:
    """Maps canonical MIME types to regimes; anything unregistered is downloaded as binary.

    An ``s3://`` source is always S3-Multipart, with the content check of its sniffed type.
    """

    def __init__(self, *, s3: S3Access | None = None) -> None:
        self._registry: dict[str, type[DownloadStrategy]] = dict(DEFAULT_REGIMES)
        self._s3 = s3

    def register(self, mime_type: str, regime: type[DownloadStrategy]) -> None:
        """Use ``regime`` for content sniffed as ``mime_type`` (replacing any earlier choice)."""
        self._registry[mime_type] = regime

    def regime_for(self, mime_type: str) -> type[DownloadStrategy]:
        """The regime class registered for ``mime_type``, else BinaryRegime."""
        return self._registry.get(mime_type, BinaryRegime)

    def select(self, probe: ProbeResult) -> DownloadStrategy:
        """A fresh regime for the content the probe sniffed (S3-Multipart for an s3:// source)."""
        return self.select_for(probe.url, probe.mime_type)

    def select_for(self, url: str, mime_type: str) -> DownloadStrategy:
        """A fresh regime for ``url`` whose content is ``mime_type`` (S3-Multipart for s3://)."""
        regime = self.regime_for(mime_type)()
        if not is_s3_url(url):
            return regime
        from ed_extractor.services.file_transfer.regimes.s3_multipart import S3MultipartRegime
        from ed_extractor.services.s3.access import S3Access

        if self._s3 is None:
            self._s3 = S3Access.from_environment()
        check = regime.content_check if isinstance(regime, BinaryRegime) else None
        return S3MultipartRegime(self._s3, check)
