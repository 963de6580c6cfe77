"""The offline demo: generated Spansh-style dumps and a local HTTP mirror that serves them."""

from ed_extractor.demo.generator import DumpStats, generate_dump, generate_mirror
from ed_extractor.demo.mirror import Mirror, MirrorError, StaticFileHandler, start_mirror

__all__ = [
    "DumpStats",
    "Mirror",
    "MirrorError",
    "StaticFileHandler",
    "generate_dump",
    "generate_mirror",
    "start_mirror",
]
