"""The download regimes: one per kind of content (gzip, JSON, zstd, binary, BitTorrent), and S3.

``s3_multipart`` is imported when an ``s3://`` source is met (it brings botocore and awscrt).
"""

from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.services.file_transfer.regimes.bittorrent import BitTorrentRegime
from ed_extractor.services.file_transfer.regimes.gzip import GzipRegime
from ed_extractor.services.file_transfer.regimes.json import JsonRegime
from ed_extractor.services.file_transfer.regimes.zstd import ZstdRegime

__all__ = ["BinaryRegime", "BitTorrentRegime", "GzipRegime", "JsonRegime", "ZstdRegime"]
