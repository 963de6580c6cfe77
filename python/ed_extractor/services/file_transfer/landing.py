"""The one landing of a verified file: a local folder's (fsync, rename, fsync the folder) here.

Every file the program keeps arrives at a ``FileLanding`` last: HTTP and S3 downloads
(``PartFile``), each file of a torrent, API dumps and EDDN hour files. ``LocalFolder`` lands them in
a folder; ``services/s3/upload.ObjectStore`` completes a multipart upload instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ed_extractor.errors import StorageError
from ed_extractor.hashing import PartSink
from ed_extractor.paths import is_whole_file, part_path
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    Destination,
    DownloadRequest,
    FileLanding,
    LandedFile,
)
from ed_extractor.services.file_transfer.resume import ResumePoint

__all__ = ["LandedFile", "LocalFolder", "finish_and_land", "land", "landing_for", "store_chunks"]


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


class LocalLanding:
    """A local folder's landing: the part file is renamed over the final name."""

    keeps_parts = True
    defers_checks = False

    def resume_point(self, url: str, part: Path) -> ResumePoint | None:
        """A folder's part file resumes from its own sidecar (see PartFile), not from here."""
        return None

    def note(self, point: ResumePoint) -> None:
        """The sidecar beside the part file records the source (see PartFile)."""

    def follow(self, sink: PartSink, part: Path, total: int | None) -> None:
        """Nothing streams out of a local part file."""

    def wait_room(self, end: int, stop: threading.Event) -> bool:
        """A local part file has room for every byte (its space was reserved)."""
        return True

    def land(
        self,
        part: Path,
        file: LandedFile,
        *,
        check: ContentCheck | None = None,
        expect: Callable[[str], None] | None = None,
    ) -> tuple[LandedFile, ContentSummary | None]:
        """Rename ``part`` over ``file.path`` and fsync the folder."""
        land(part, file.path)
        return file, None

    def abandon(self) -> None:
        """Nothing to undo: the part file's owner removes or keeps it."""


class LocalFolder:
    """The destination of a run that keeps its files in a folder (the files' own paths)."""

    def landing(self, final: Path, metadata: Mapping[str, str]) -> FileLanding:
        """The rename into place."""
        return LocalLanding()

    def location(self, final: Path) -> str:
        """The file's path."""
        return str(final)

    def holds(self, final: Path, size: int, sha256: str) -> bool:
        """True when ``final`` is a regular file of ``size`` bytes (verify re-hashes; not this)."""
        return is_whole_file(final, size)

    def restore(self, final: Path) -> bool:
        """The file is where it is stored: nothing to bring back."""
        return False


LOCAL_FOLDER: Destination = LocalFolder()


def landing_for(request: DownloadRequest, final: Path | None = None) -> FileLanding:
    """The landing of ``final`` (default: the request's file) at the request's destination."""
    destination = request.destination or LOCAL_FOLDER
    return destination.landing(final or request.final_path, request.source_metadata())


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


def finish_and_land(
    sink: AppendingSink, final: Path, landing: FileLanding | None = None
) -> LandedFile:
    """Finish ``sink`` (written to ``final``'s part file), fsync it and land it (default: rename).

    A failure aborts the sink, removes the part file and raises StorageError.
    """
    landing = landing or LocalLanding()
    try:
        size = sink.tell()
        digest = sink.finish(fsync=True)
    except OSError as exc:
        _discard(sink, final)
        raise StorageError(part_path(final), f"cannot write ({exc.strerror or exc})") from exc
    landed = LandedFile(final, size, digest, sink.blake3_hexdigest())
    try:
        landing.land(part_path(final), landed)
    except BaseException:
        landing.abandon()
        with contextlib.suppress(OSError):
            part_path(final).unlink()
        raise
    return landed


def store_chunks(
    final: Path,
    chunks: Iterable[bytes],
    *,
    blake3: bool = True,
    landing: FileLanding | None = None,
) -> LandedFile:
    """Write ``chunks`` to ``final`` through its part file and land it (default: rename).

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
    return finish_and_land(sink, final, landing)
