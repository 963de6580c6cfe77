"""Fixtures of the per-byte tests: the backend under test (both, in turn) and a scratch file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.backends import BACKENDS, backend_module


@pytest.fixture(params=BACKENDS)
def name(request: pytest.FixtureRequest) -> str:
    """Each test taking ``name`` (or ``backend``) runs once per backend."""
    return str(request.param)


@pytest.fixture
def backend(name: str) -> ModuleType:
    return backend_module(name)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A file path on tmpfs when there is one (large writes stay off the disk)."""
    directory = Path("/dev/shm") if os.path.isdir("/dev/shm") else tmp_path
    path = directory / f"ed-sink-test-{os.getpid()}-{threading.get_ident()}.part"
    yield path
    path.unlink(missing_ok=True)
