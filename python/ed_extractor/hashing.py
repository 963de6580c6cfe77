"""Choose the hashing backend: the native extension when it imports, else the Python fallback."""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Literal, Protocol

import blake3

from ed_extractor import _fallback

if TYPE_CHECKING:
    from typing_extensions import Buffer

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
    from ed_extractor._fallback import Blake3, FileSink, Sha256
else:
    Sha256 = _backend.Sha256
    FileSink = _backend.FileSink
    Blake3 = getattr(_backend, "Blake3", _fallback.Blake3)


class FileHasher(Protocol):
    """What ``file_hasher`` returns: fed large slices of a file, asked for the hex digest."""

    def update(self, data: Buffer, /) -> object:
        """Feed the next slice."""
        ...

    def hexdigest(self) -> str:
        """The digest of everything fed, as lowercase hex."""
        ...


def file_hasher(algo: Literal["blake3", "sha256"]) -> FileHasher:
    """A hasher for whole files; BLAKE3 spreads each large update over every core.

    The native Blake3 does so by itself (rayon, GIL released); the ``blake3`` package is asked to.
    """
    if algo == "sha256":
        return Sha256()
    if Blake3 is not _fallback.Blake3:
        return Blake3()
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


__all__ = ["BACKEND", "BackendName", "Blake3", "FileHasher", "FileSink", "Sha256", "file_hasher"]
