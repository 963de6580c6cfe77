"""The content regimes: what a body must be (gzip, JSON, zstd), each with its check; binary: any."""

from ed_extractor.services.file_transfer.regimes.binary import BinaryRegime
from ed_extractor.services.file_transfer.regimes.gzip import GzipRegime
from ed_extractor.services.file_transfer.regimes.json import JsonRegime
from ed_extractor.services.file_transfer.regimes.zstd import ZstdRegime

__all__ = ["BinaryRegime", "GzipRegime", "JsonRegime", "ZstdRegime"]
