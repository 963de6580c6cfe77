"""The two hashing backends for parametrized tests and benchmarks; native skips only if unbuilt."""

from __future__ import annotations

from types import ModuleType

import pytest

from ed_extractor import _fallback

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
