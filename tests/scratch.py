"""Scratch space for large test files: tmpfs (/dev/shm) when it has room, else the test's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

SHM = Path("/dev/shm")
HEADROOM = 16 << 20  # what others on the machine may still need


def scratch_folder(fallback: Path, needed_bytes: int, *, tmpfs: Path = SHM) -> Path:
    """``tmpfs`` if it exists with ``needed_bytes`` (+ headroom) free, else ``fallback``.

    A container's /dev/shm is often 64 MB: a test writing hundreds of MB there fails with ENOSPC.
    """
    if tmpfs.is_dir() and shutil.disk_usage(tmpfs).free >= needed_bytes + HEADROOM:
        return tmpfs
    return fallback
