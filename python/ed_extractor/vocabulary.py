"""Names and checks every layer shares, with no dependencies: the command line loads them fast."""

from __future__ import annotations

from typing import Literal

ContentRegime = Literal["gzip", "json", "zstd", "binary", "bittorrent"]
"""The regimes chosen by what a body is; also the values of a source's ``expect``."""

Regime = Literal[ContentRegime, "s3-multipart"]
"""Every regime a file is stored by: the content regimes, and those the kind of source picks."""

_HEX = frozenset("0123456789abcdef")


def normalize_sha256(value: str) -> str:
    """``value`` as a lower-case SHA-256 hex digest; ``ValueError`` unless it is 64 hex digits."""
    digest = value.strip().lower()
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise ValueError("must be 64 hexadecimal digits")
    return digest
