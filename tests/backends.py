"""The two backends for parametrized tests and benchmarks; native skips only if unbuilt."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from ed_extractor import _fallback
from ed_extractor.services.file_transfer.regimes.compressed import StreamVerifier
from ed_extractor.services.file_transfer.regimes.gzip import GzipVerifier, IsalGzipVerifier
from ed_extractor.services.file_transfer.regimes.zstd import PythonZstdVerifier

try:
    from ed_extractor import _native
except ImportError as exc:  # pragma: no cover - only without a built extension
    _native_or_none: ModuleType | None = None
    NATIVE_IMPORT_ERROR = f"ed_extractor._native does not import: {exc!r}"
else:
    _native_or_none = _native
    NATIVE_IMPORT_ERROR = ""

BACKENDS = ["native", "python"]


def backend_module(name: str) -> ModuleType:
    """The backend called ``name``; skips the calling test (saying why) if native is not built."""
    if name == "python":
        return _fallback
    if _native_or_none is None:
        print(NATIVE_IMPORT_ERROR)
        pytest.skip(NATIVE_IMPORT_ERROR)
    return _native_or_none


def gzip_verifier(name: str) -> Callable[[], GzipVerifier]:
    """The gzip verifier of backend ``name``; skips like ``backend_module`` if native is unbuilt."""
    if name == "python":
        return IsalGzipVerifier
    verifier: Callable[[], GzipVerifier] = backend_module(name).GzipVerifier
    return verifier


def zstd_verifier(name: str) -> Callable[[], StreamVerifier]:
    """The zstd verifier of backend ``name``; skips like ``backend_module`` if native is unbuilt."""
    if name == "python":
        return PythonZstdVerifier
    verifier: Callable[[], StreamVerifier] = backend_module(name).ZstdVerifier
    return verifier
