"""The destination lock: an fcntl lock file that keeps two runs from interleaving in one folder.

Writers (fetch, run) hold it exclusive; readers that must not see a file being replaced (verify)
hold it shared, so several readers run together and a writer waits for all of them.
"""

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


def _open_lock_file(path: Path, shared: bool) -> int:
    """Open (creating) the lock file; a reader may use an existing one on a read-only folder."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if shared:
            try:
                return os.open(path, os.O_RDONLY)
            except OSError:
                pass
        raise StorageError(path, f"cannot open lock file ({exc.strerror or exc})") from exc


@contextmanager
def destination_lock(dest: Path, *, wait_s: float = 0.0, shared: bool = False) -> Iterator[Path]:
    """Hold the lock of ``dest`` for the block (exclusive, or ``shared`` with other readers).

    Waits up to ``wait_s`` for a conflicting holder, then raises LockError.
    """
    path = dest / LOCK_FILE_NAME
    fd = _open_lock_file(path, shared)
    try:
        deadline = time.monotonic() + wait_s
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockError(
                        f"another ed-extractor run holds {path} (waited {wait_s:g} s)"
                    ) from None
                time.sleep(_POLL_INTERVAL_S)
        if not shared:  # the writer's pid, for whoever finds the lock taken
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)
