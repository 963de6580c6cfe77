"""PartFile: the one owner of a download's ``<name>.part`` and its sidecar, from open to rename."""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ed_extractor.errors import DeadlineError, IncompleteBodyError, StorageError, TransferError
from ed_extractor.hashing import FileSink, PartWriter, SinkVerifier
from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer.landing import land
from ed_extractor.services.file_transfer.resume import (
    ResumePoint,
    discard_part,
    load_resume_point,
    save_resume_point,
)
from ed_extractor.services.file_transfer.space import allocated_bytes, reserve_space

log = logging.getLogger(__name__)


class PartFileStale(Exception):
    """The kept part file cannot be continued; it is discarded and the download starts over.

    It changed behind the sidecar's back, or the server's answer does not fit it.
    """


class PartFile:
    """The temporary file of one download of ``url`` into ``final_path`` (pooch-style).

    On creation it loads the resume point a previous attempt left (``resume``; None: start from
    nothing). The body goes through ``open_sink`` (one stream, appended) or ``open_writer``
    (several ranges written at their offsets into a file of the final size). Used as a context
    manager, an exception leaving the block keeps the part for the next attempt when
    ``keeps(exc)``, and discards it otherwise; ``move_into_place`` ends a good download.
    """

    def __init__(self, final_path: Path, url: str) -> None:
        self.final_path = final_path
        self.path = part_path(final_path)
        self.url = url
        self.resume: ResumePoint | None = load_resume_point(final_path, url)
        self._resumable = self.resume is not None

    @property
    def resumable(self) -> bool:
        """True while a sidecar describes the part file, so that a later attempt may continue it."""
        return self._resumable

    def allow_resume(self, point: ResumePoint) -> None:
        """Record (or update) the sidecar: the part file may be continued from ``point``."""
        save_resume_point(self.final_path, point)
        self._resumable = True

    def open_sink(
        self,
        resume_from: int,
        verifier: SinkVerifier | None = None,
        *,
        blake3: bool = False,
        total: int | None = None,
    ) -> FileSink:
        """A FileSink appending to the part file after its first ``resume_from`` bytes.

        A native ``verifier`` (gzip, zstd) is fed in order on the sink's own threads. With the
        body's ``total`` length known, the disk space for it is reserved at once.
        """
        try:
            sink = FileSink(self.path, resume_from=resume_from, blake3=blake3, verifier=verifier)
        except ValueError as exc:  # fewer bytes than the sidecar's resume point
            log.warning("part file shorter than its resume point; starting over",
                        extra={"path": str(self.path), "error": str(exc)})  # fmt: skip
            self.discard()
            raise PartFileStale(str(exc)) from exc
        except OSError as exc:
            raise StorageError(self.path, f"cannot open ({exc.strerror or exc})") from exc
        if total is not None:  # after opening: the sink cuts the file to its resume point
            self._reserve(total, sink.abort)
        return sink

    def open_writer(self, total: int) -> PartWriter:
        """A PartWriter over the part file: sized to ``total`` bytes, or the kept one continued.

        Its disk space is reserved at once (StorageError when the disk cannot hold it).
        """
        try:
            writer = PartWriter(self.path, total, keep=self.resume is not None)
        except ValueError as exc:  # a kept part file that is not the size its sidecar says
            self.discard()
            raise PartFileStale(str(exc)) from exc
        except OSError as exc:
            self.discard()
            raise StorageError(self.path, f"cannot open ({exc.strerror or exc})") from exc
        self._reserve(total, writer.close)
        return writer

    def _reserve(self, total: int, close: Callable[[], object]) -> None:
        """Reserve the disk blocks of ``total`` bytes; on failure close, discard, StorageError."""
        needed = max(0, total - allocated_bytes(self.path))
        try:
            reserve_space(self.path, total)
        except OSError as exc:
            close()
            self.discard()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                free = shutil.disk_usage(self.path.parent).free
                message = (
                    f"not enough space for {self.final_path.name}: needs {needed} bytes, "
                    f"{free} free ({exc.strerror})"
                )
            else:
                message = f"cannot reserve {needed} bytes ({exc.strerror or exc})"
            raise StorageError(self.path, message) from exc

    def discard(self) -> None:
        """Remove the part file and its sidecar; nothing is left to resume."""
        discard_part(self.final_path)
        self.resume = None
        self._resumable = False

    def keeps(self, exc: BaseException) -> bool:
        """The one rule: keep the part after ``exc`` if it is resumable and a retry may go on."""
        return self._resumable and _worth_keeping(exc)

    def move_into_place(self) -> None:
        """Rename the verified part file over the final name and make the rename durable."""
        try:
            land(self.path, self.final_path)
        finally:
            self.discard()  # the sidecar (and the part file, if it could not be moved)

    def __enter__(self) -> PartFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if not self.keeps(exc):
            self.discard()
        if isinstance(exc, OSError):
            raise StorageError(self.path, f"cannot write ({exc.strerror or exc})") from exc


def _worth_keeping(exc: BaseException) -> bool:
    """True when the next attempt may continue the part file after ``exc``."""
    if isinstance(exc, DeadlineError | IncompleteBodyError):
        return True
    if isinstance(exc, TransferError):
        return exc.retryable
    return not isinstance(exc, Exception)  # interrupted (Ctrl-C, SIGTERM): continue next time
