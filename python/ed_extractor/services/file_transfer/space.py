"""Reserve a part file's disk blocks up front (fallocate(2)), so that a full disk shows at once."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

#: FALLOC_FL_KEEP_SIZE: allocate without changing the file's length, so that a one-stream part
#: file (whose length is its resume point) can be reserved beyond its end.
_KEEP_SIZE: Final = 0x01
#: fallocate(2) answers these where the file system cannot allocate ahead (some network ones).
_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOSYS})
_warned_devices: set[int] = set()  # the file systems already logged (sources run in threads)
_warned_lock = threading.Lock()

Fallocate = Callable[[int, int, int, int], int]


@cache
def _fallocate() -> Fallocate | None:
    """libc's fallocate(2), not posix_fallocate(3): that one writes zeros where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.fallocate64
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    call: Fallocate = function
    return call


def allocated_bytes(path: Path) -> int:
    """The bytes of disk ``path`` holds (its blocks, not its length); 0 when it does not exist."""
    try:
        return os.stat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def reserve_space(path: Path, length: int) -> bool:
    """Allocate the blocks of ``path``'s first ``length`` bytes, keeping its length as it is.

    OSError (ENOSPC, EDQUOT, ...) when the disk cannot hold them. Where the file system cannot
    allocate ahead, the file stays sparse (logged once per file system) and False is returned.
    """
    if length <= 0:
        return True
    fallocate = _fallocate()
    fd = os.open(path, os.O_WRONLY)
    try:
        if fallocate is None:
            code = errno.ENOSYS
        else:
            code = ctypes.get_errno() if fallocate(fd, _KEEP_SIZE, 0, length) else 0
        device = os.fstat(fd).st_dev
    finally:
        os.close(fd)
    if code == 0:
        return True
    if code not in _UNSUPPORTED:
        raise OSError(code, os.strerror(code), str(path))
    with _warned_lock:
        first = device not in _warned_devices
        _warned_devices.add(device)
    if first:
        log.warning("the file system cannot reserve space ahead; the part file stays sparse",
                    extra={"path": str(path), "error": os.strerror(code)})  # fmt: skip
    return False
