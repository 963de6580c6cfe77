"""PartFile: the one owner of a download's ``<name>.part`` and its sidecar, from open to rename."""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from ed_extractor.errors import DeadlineError, IncompleteBodyError, StorageError, TransferError
from ed_extractor.hashing import PartSink, SinkVerifier
from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    FileLanding,
    LandedFile,
)
from ed_extractor.services.file_transfer.landing import LocalLanding
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
    nothing). The body goes through ``open_sink`` (a PartSink: a growing prefix, or a file of the
    final size written at offsets by several connections). Used as a context
    manager, an exception leaving the block keeps the part for the next attempt when
    ``keeps(exc)``, and discards it otherwise; ``move_into_place`` ends a good download through
    its ``landing`` (default: renamed in its folder). A landing that keeps no parts (an object
    store, which streams the bytes out as they are hashed) never leaves a sidecar to resume.
    """

    def __init__(self, final_path: Path, url: str, landing: FileLanding | None = None) -> None:
        self.final_path = final_path
        self.path = part_path(final_path)
        self.url = url
        self.landing = landing or LocalLanding()
        self.resume: ResumePoint | None
        if self.landing.keeps_parts:
            self.resume = load_resume_point(final_path, url)
        else:  # the landing holds what a killed run sent (an upload), not this folder
            discard_part(final_path)
            self.resume = self.landing.resume_point(url, self.path)
        self._resumable = self.resume is not None

    @property
    def resumable(self) -> bool:
        """True while a sidecar describes the part file, so that a later attempt may continue it."""
        return self._resumable

    def allow_resume(self, point: ResumePoint) -> None:
        """Record (or update) the sidecar: the part file may be continued from ``point``."""
        if not self.landing.keeps_parts:
            self.landing.note(point)
            return
        save_resume_point(self.final_path, point)
        self._resumable = True

    def open_sink(
        self,
        size: int | None,
        *,
        written: Sequence[tuple[int, int]] = (),
        verifier: SinkVerifier | None = None,
        blake3: bool = False,
        reserve: int | None = None,
        window: int,
    ) -> PartSink:
        """The PartSink of the part file: kept (with its ``written`` bytes) or created.

        ``size`` None: a prefix that grows as written; else a file of ``size`` bytes. ``verifier``
        is fed the file in order on the sink's threads, from early chunks held within ``window``.
        The disk space of ``reserve`` bytes (the file's size, when known) is taken at once
        (StorageError when the disk cannot hold it) unless the landing streams the bytes out.
        """
        keep = self.resume is not None
        if keep:
            self._check_holds(max((end for _, end in written), default=0))
        try:
            sink = PartSink(
                self.path, size, keep=keep, written=written, blake3=blake3,
                verifier=verifier, window=window,
            )  # fmt: skip
        except ValueError as exc:  # a kept part file that is not what its sidecar says
            log.warning("part file does not fit its sidecar; starting over",
                        extra={"path": str(self.path), "error": str(exc)})  # fmt: skip
            self.discard()
            raise PartFileStale(str(exc)) from exc
        except OSError as exc:
            if not keep:
                self.discard()
            raise StorageError(self.path, f"cannot open ({exc.strerror or exc})") from exc
        if reserve is not None and self.landing.keeps_parts:  # after opening: the sink sizes it
            self._reserve(reserve, sink.abort)
        self.landing.follow(sink, self.path, reserve)
        return sink

    def wait_room(self, end: int, stop: threading.Event) -> bool:
        """Wait until the landing takes bytes up to ``end``; False once ``stop`` is set."""
        return self.landing.wait_room(end, stop)

    def _check_holds(self, length: int) -> None:
        """PartFileStale (the part discarded) unless the kept part file holds ``length`` bytes."""
        try:
            held = self.path.stat().st_size
        except OSError:
            held = -1
        if held < length:
            log.warning("part file shorter than its resume point; starting over",
                        extra={"path": str(self.path), "held": held, "needed": length})  # fmt: skip
            self.discard()
            raise PartFileStale(f"{self.path} holds {held} bytes, not {length}")

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
        """Remove the part file and its sidecar (or what the landing sent); nothing to resume."""
        if not self.landing.keeps_parts:
            self.landing.abandon()
        discard_part(self.final_path)
        self.resume = None
        self._resumable = False

    def keeps(self, exc: BaseException) -> bool:
        """The one rule: keep the part after ``exc`` if it is resumable and a retry may go on."""
        return self._resumable and _worth_keeping(exc)

    def move_into_place(
        self,
        file: LandedFile,
        *,
        check: ContentCheck | None = None,
        expect: Callable[[str], None] | None = None,
    ) -> tuple[LandedFile, ContentSummary | None]:
        """Land the verified part file as ``file`` (renamed over the final name, durably).

        ``check`` and ``expect`` are for a landing that ``defers_checks`` (see FileLanding).
        """
        try:
            return self.landing.land(self.path, file, check=check, expect=expect)
        except BaseException:
            self.landing.abandon()
            raise
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
            self.landing.abandon()
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
