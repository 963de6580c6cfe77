"""The offline demo: generated Spansh-style dumps and a local HTTP mirror that serves them."""

from ed_extractor.demo.generator import DumpStats, generate_dump, generate_mirror

__all__ = ["DumpStats", "generate_dump", "generate_mirror"]
