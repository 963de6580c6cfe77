"""The one landing of a verified file: fsynced, renamed over its final name, folder fsynced.

Every file the program keeps arrives here last: HTTP and S3 downloads (``PartFile``), each file of
a torrent, API dumps and EDDN hour files. ``land`` is the step a second kind of destination (an
object store: complete a multipart upload) replaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ed_extractor.errors import StorageError
from ed_extractor.hashing import PartSink
from ed_extractor.paths import part_path


@dataclass(frozen=True)
class LandedFile:
    """A file in place under its final name, with the digests of its bytes."""

    path: Path
    bytes: int
    sha256: str
    blake3: str | None


def land(part: Path, final: Path) -> None:
    """Rename the complete, fsynced ``part`` over ``final`` and fsync the folder.

    On failure the part file is removed and StorageError names ``final``; the previous file under
    ``final`` (if any) is left as it was.
    """
    try:
        os.replace(part, final)
        directory = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink()
        raise StorageError(final, f"cannot move into place ({exc.strerror or exc})") from exc


class AppendingSink:
    """A part file written from its start, chunk after chunk, through a ``PartSink`` of no set size.

    ``write`` puts each chunk at the running end (on disk when it returns; hashed, SHA-256 and
    optionally BLAKE3, on the sink's threads); ``finish`` returns the whole file's SHA-256.
    """

    def __init__(self, part: Path, *, blake3: bool) -> None:
        self._sink = PartSink(part, None, blake3=blake3)
        self._end = 0

    def write(self, data: bytes) -> int:
        """Append ``data``; its length. An OSError names the part file."""
        written = self._sink.write(self._end, data)
        self._end += written
        return written

    def tell(self) -> int:
        """The bytes written so far."""
        return self._end

    def finish(self, *, fsync: bool = True) -> str:
        """Wait for the hashing, fsync (unless told not to) and close; the hex SHA-256."""
        return self._sink.finish(fsync)

    def blake3_hexdigest(self) -> str | None:
        """The hex BLAKE3 of the whole file after ``finish``; None before, or unless asked for."""
        return self._sink.blake3_hexdigest()

    def abort(self) -> None:
        """Stop hashing and close the file; what is written stays on disk. Never raises."""
        self._sink.abort()


def open_part_sink(final: Path, *, blake3: bool = True) -> AppendingSink:
    """An AppendingSink (SHA-256, and BLAKE3) on ``final``'s new part file, its folder created."""
    part = part_path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return AppendingSink(part, blake3=blake3)
    except OSError as exc:
        raise StorageError(part, f"cannot open ({exc.strerror or exc})") from exc


def _discard(sink: AppendingSink, final: Path) -> None:
    """Stop ``sink`` and remove ``final``'s part file; never raises."""
    sink.abort()
    with contextlib.suppress(OSError):
        part_path(final).unlink()


def finish_and_land(sink: AppendingSink, final: Path) -> LandedFile:
    """Finish ``sink`` (written to ``final``'s part file), fsync it and land it under ``final``.

    A failure aborts the sink, removes the part file and raises StorageError.
    """
    try:
        size = sink.tell()
        digest = sink.finish(fsync=True)
    except OSError as exc:
        _discard(sink, final)
        raise StorageError(part_path(final), f"cannot write ({exc.strerror or exc})") from exc
    land(part_path(final), final)
    return LandedFile(final, size, digest, sink.blake3_hexdigest())


def store_chunks(final: Path, chunks: Iterable[bytes], *, blake3: bool = True) -> LandedFile:
    """Write ``chunks`` to ``final`` through its part file and land it.

    The folder is created when missing. Nothing appears under ``final`` unless every chunk is on
    disk; a failure (the disk's as StorageError, or what the iteration raised) leaves no part file
    behind and the previous file under ``final`` as it was.
    """
    sink = open_part_sink(final, blake3=blake3)
    try:
        for chunk in chunks:
            sink.write(chunk)
    except BaseException as exc:
        _discard(sink, final)
        if isinstance(exc, OSError):
            raise StorageError(part_path(final), f"cannot write ({exc.strerror or exc})") from exc
        raise
    return finish_and_land(sink, final)
