"""Choose the hashing backend: the native extension when it imports, else the Python fallback."""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from ed_extractor import _fallback
from ed_extractor._fallback import SinkVerifier

BackendName = Literal["native", "python"]


def _native_wanted() -> bool:
    """False when ED_EXTRACTOR_NATIVE asks for the pure-Python backend."""
    return os.environ.get("ED_EXTRACTOR_NATIVE", "1").strip().lower() not in {"0", "false", "no"}


def _select_backend() -> tuple[ModuleType, BackendName]:
    if _native_wanted():
        try:
            from ed_extractor import _native
        except ImportError:
            pass
        else:
            return _native, "native"
    return _fallback, "python"


_backend, BACKEND = _select_backend()
if TYPE_CHECKING:  # both backends have one API; the fallback's classes are its reference
    from ed_extractor._fallback import Blake3, PartSink, Sha256
else:
    Sha256 = _backend.Sha256
    Blake3 = _backend.Blake3
    PartSink = _backend.PartSink

__all__ = [
    "BACKEND",
    "BackendName",
    "Blake3",
    "PartSink",
    "Sha256",
    "SinkVerifier",
]
