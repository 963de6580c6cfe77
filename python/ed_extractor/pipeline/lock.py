"""The destination lock: an fcntl lock file that keeps two runs from interleaving in one folder."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ed_extractor.errors import LockError, StorageError

LOCK_FILE_NAME = ".ed-extractor.lock"
_POLL_INTERVAL_S = 0.2


@contextmanager
def destination_lock(dest: Path, *, wait_s: float = 0.0) -> Iterator[Path]:
    """Hold the exclusive lock of ``dest`` for the block; wait up to ``wait_s`` for another run."""
    path = dest / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(path, f"cannot open lock file ({exc.strerror or exc})") from exc
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another ed-extractor run holds {path} (waited {wait_s:g} s)"
                    ) from None
                time.sleep(_POLL_INTERVAL_S)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)
