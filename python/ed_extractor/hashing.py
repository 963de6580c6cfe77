"""Choose the SHA-256 backend: the native extension when it imports, else the hashlib fallback."""

from __future__ import annotations

import os
from typing import Literal

BackendName = Literal["native", "python"]


def _native_wanted() -> bool:
    return os.environ.get("ED_EXTRACTOR_NATIVE", "1").strip().lower() not in {"0", "false", "no"}


if _native_wanted():
    try:
        from ed_extractor._native import FileSink, Sha256

        BACKEND: BackendName = "native"
    except ImportError:
        from ed_extractor._fallback import FileSink, Sha256

        BACKEND = "python"
else:
    from ed_extractor._fallback import FileSink, Sha256

    BACKEND = "python"

__all__ = ["BACKEND", "BackendName", "FileSink", "Sha256"]
