"""The download regimes, one per kind of content (binary, gzip, JSON, zstd), and S3-Multipart."""

from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.services.file_transfer.regimes.gzip import GzipRegime
from ed_extractor.services.file_transfer.regimes.json import JsonRegime
from ed_extractor.services.file_transfer.regimes.s3_multipart import S3MultipartRegime
from ed_extractor.services.file_transfer.regimes.zstd import ZstdRegime

__all__ = ["BinaryRegime", "GzipRegime", "JsonRegime", "S3MultipartRegime", "ZstdRegime"]
