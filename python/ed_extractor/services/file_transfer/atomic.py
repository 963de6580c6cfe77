"""Put a finished file under its final name atomically: part file, SHA-256, fsync, rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ed_extractor.errors import StorageError
from ed_extractor.hashing import FileSink
from ed_extractor.paths import part_path


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(part: Path, final: Path) -> None:
    """Rename the complete, fsynced ``part`` over ``final`` and fsync the folder.

    On failure the part file is removed and StorageError names ``final``; the previous file under
    ``final`` (if any) is left as it was.
    """
    try:
        os.replace(part, final)
        fsync_directory(final.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise StorageError(final, f"cannot move into place ({exc.strerror or exc})") from exc


def store_bytes(final: Path, body: bytes) -> str:
    """Write ``body`` to ``final`` through its part file; return the file's SHA-256 hex digest.

    The folder is created when missing. Nothing appears under ``final`` unless the whole body is
    on disk; a failure raises StorageError and leaves no part file behind.
    """
    part = part_path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sink = FileSink(part)
    except OSError as exc:
        raise StorageError(part, f"cannot open ({exc.strerror or exc})") from exc
    try:
        sink.write(body)
        digest = sink.finish(fsync=True)
    except BaseException as exc:
        sink.abort()
        with contextlib.suppress(OSError):
            part.unlink()
        if isinstance(exc, OSError):
            raise StorageError(part, f"cannot write ({exc.strerror or exc})") from exc
        raise
    publish(part, final)
    return digest
