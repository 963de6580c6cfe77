"""Pure-Python backend (hashlib, blake3, os.pwrite, a thread) with the native extension's API."""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from blake3 import blake3 as _blake3

if TYPE_CHECKING:
    from typing_extensions import Buffer


def _contiguous(buffer: Buffer) -> memoryview:
    view = memoryview(buffer)
    if not view.c_contiguous:
        raise BufferError("buffer is not C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def _add_filename(error: OSError, path: str) -> None:
    """Name the file in an error from a descriptor's call, as ``open()`` and the native sink do."""
    if error.filename is None:
        error.filename = path


class Sha256:
    """A hashlib-shaped SHA-256 hasher."""

    name: Final = "sha256"
    digest_size: Final = 32
    block_size: Final = 64

    def __init__(self, data: Buffer | None = None) -> None:
        self._hash = hashlib.sha256()
        if data is not None:
            self.update(data)

    def update(self, data: Buffer) -> None:
        """Feed a contiguous buffer into the hash."""
        self._hash.update(_contiguous(data))

    def digest(self) -> bytes:
        """Return the digest of everything fed so far."""
        return self._hash.digest()

    def hexdigest(self) -> str:
        """Return the digest of everything fed so far as lowercase hex."""
        return self._hash.hexdigest()

    def copy(self) -> Sha256:
        """Return an independent copy of the hasher's state."""
        clone = Sha256.__new__(Sha256)
        clone._hash = self._hash.copy()
        return clone


class Blake3:
    """A hashlib-shaped BLAKE3 hasher (the ``blake3`` package, multi-threaded for large inputs)."""

    name: Final = "blake3"
    digest_size: Final = 32
    block_size: Final = 64

    def __init__(self, data: Buffer | None = None) -> None:
        self._hash = _blake3(max_threads=_blake3.AUTO)
        if data is not None:
            self.update(data)

    def update(self, data: Buffer) -> None:
        """Feed a contiguous buffer into the hash."""
        self._hash.update(_contiguous(data))

    def digest(self, length: int = 32) -> bytes:
        """Return the digest of everything fed so far (``length`` bytes of extendable output)."""
        return self._hash.digest(_checked_length(length))

    def hexdigest(self, length: int = 32) -> str:
        """Return the digest of everything fed so far as lowercase hex."""
        return self._hash.hexdigest(_checked_length(length))

    def copy(self) -> Blake3:
        """Return an independent copy of the hasher's state."""
        clone = Blake3.__new__(Blake3)
        clone._hash = self._hash.copy()
        return clone


def _checked_length(length: int) -> int:
    if length <= 0:
        raise ValueError("length must be > 0")
    return length


class SinkVerifier(Protocol):
    """A content check fed chunk by chunk (``GzipVerifier``); ``feed`` raises ``ValueError``."""

    def feed(self, data: Buffer) -> None:
        """Check the next chunk of the stream."""


class _StreamDigest:
    """SHA-256 (and BLAKE3) of a stream's bytes in order, and its content check."""

    def __init__(self, *, blake3: bool, verifier: SinkVerifier | None) -> None:
        self._hash = hashlib.sha256()
        self._blake3 = _blake3() if blake3 else None
        self._verifier = verifier

    def update(self, view: Buffer) -> None:
        """Hash and check the next bytes of the stream."""
        self._hash.update(view)
        if self._blake3 is not None:
            self._blake3.update(view)
        if self._verifier is not None:
            self._verifier.feed(view)

    def hexdigest(self) -> str:
        """The hex SHA-256 of the bytes so far."""
        return self._hash.hexdigest()

    def blake3_hexdigest(self) -> str | None:
        """The hex BLAKE3 of the bytes so far; None unless asked for."""
        return None if self._blake3 is None else self._blake3.hexdigest()


def _pwrite_all(fd: int, view: memoryview, offset: int, path: str) -> None:
    """Write all of ``view`` at ``offset``; an OSError names ``path``."""
    done = 0
    try:
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:], offset + done)
    except OSError as error:
        _add_filename(error, path)
        raise


REORDER_WINDOW: Final = 32 << 20  # early chunks every PartSink of the process may hold at once
_READ_BACK_STEP: Final = 512 << 10  # bytes read back from the file per step
_SIGNAL_CHECK_INTERVAL: Final = 0.1  # seconds a waiting write sleeps at most before looking again


class _ReorderWindow:
    """The bytes held by every PartSink of the process; a release moves the generation on."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self.generation = 0
        self._released = threading.Condition()

    def take(self, size: int, *, force: bool) -> bool:
        """Hold ``size`` more bytes if they fit (always with ``force``); True when held."""
        with self._released:
            if not force and self._held + size > self._limit:
                return False
            self._held += size
            return True

    def give(self, size: int) -> None:
        """Release ``size`` bytes taken before."""
        with self._released:
            self._held -= size
            self.generation += 1
            self._released.notify_all()

    def wait_release(self, seen: int, timeout: float) -> None:
        """Wait until a release after generation ``seen`` (or ``timeout`` seconds)."""
        with self._released:
            self._released.wait_for(lambda: self.generation != seen, timeout)


_WINDOW: Final = _ReorderWindow(REORDER_WINDOW)


class _Intervals:
    """Disjoint byte intervals ``[start, end)``, merged when they touch."""

    def __init__(self, spans: Sequence[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in spans:
            self.insert(start, end)

    def insert(self, start: int, end: int) -> None:
        """Add ``[start, end)``."""
        if start >= end:
            return
        first = bisect.bisect_left(self._ends, start)  # the first interval ending at or after start
        last = bisect.bisect_right(self._starts, end)  # past the last one starting at or before end
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def covering(self, at: int) -> int | None:
        """The end of the interval that holds byte ``at``, if one does."""
        index = bisect.bisect_right(self._starts, at) - 1
        return self._ends[index] if index >= 0 and self._ends[index] > at else None

    def overlap(self, start: int, end: int) -> int:
        """How many bytes of ``[start, end)`` lie in the intervals."""
        return sum(
            max(0, min(e, end) - max(s, start))
            for s, e in zip(self._starts, self._ends, strict=True)
        )

    def end(self) -> int:
        """The end of the last interval (0 when empty)."""
        return self._ends[-1] if self._ends else 0


class PartSink:
    """A part file written at offsets by any number of threads, hashed and checked in file order.

    See ``_native.pyi``: one Python thread hashes the file in order from chunks held in a
    process-wide reorder window, reading back from the file what did not fit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: int | None,
        *,
        keep: bool = False,
        written: Sequence[tuple[int, int]] = (),
        blake3: bool = False,
        verifier: SinkVerifier | None = None,
        window: int = REORDER_WINDOW,
    ) -> None:
        self._path = os.fspath(path)
        self._size = size
        _check_written(written, size, keep)
        self._fd = _open_part(self._path, size, keep)
        self._closing = False  # finish or abort began: no new use of the descriptor
        self._fd_users = 0  # calls using the descriptor now (it is closed only after them)
        self._digest = _StreamDigest(blake3=blake3, verifier=verifier)
        self._blake3_hex: str | None = None
        self._window = window
        self._changed = threading.Condition()
        self._held: dict[int, bytes] = {}
        self._held_bytes = 0
        self._written = _Intervals(written)
        self._resumed = _Intervals(written)
        self._frontier = 0
        self._target: int | None = None
        self._stopped = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._read_back = 0
        self._resumed_bytes = 0
        self._thread = threading.Thread(target=self._run, name="sink-order", daemon=True)
        self._thread.start()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    @contextlib.contextmanager
    def _open_fd(self) -> Iterator[int]:
        """The file's descriptor, not closed by a concurrent finish or abort until we are done."""
        with self._changed:
            if self._closing:
                raise ValueError("I/O operation on a finished or aborted PartSink")
            self._fd_users += 1
        try:
            yield self._fd
        finally:
            with self._changed:
                self._fd_users -= 1
                self._changed.notify_all()

    def _begin_closing(self) -> bool:
        """Refuse new uses of the descriptor and wait for the current ones; False if closed."""
        with self._changed:
            closing, self._closing = self._closing, True
            self._changed.wait_for(lambda: self._fd_users == 0)
        return not closing

    def write(self, offset: int, data: Buffer) -> int:
        """Write all of ``data`` at ``offset`` and hand it to the in-order hashing."""
        with self._open_fd() as fd:
            self._raise_failure()
            view = _contiguous(data)
            end = offset + view.nbytes
            if offset < 0 or (self._size is not None and end > self._size):
                raise ValueError(
                    f"bytes {offset}..{offset}+{view.nbytes} lie outside the part file's "
                    f"{self._size or 0} bytes"
                )
            try:
                _pwrite_all(fd, view, offset, self._path)
            except OSError as error:
                self._error = self._error or error
                raise
        if view.nbytes:
            self._place(offset, data if isinstance(data, bytes) else view, end)
        return view.nbytes

    def _place(self, offset: int, chunk: bytes | memoryview, end: int) -> None:
        """Record the chunk as on disk; hold it for the hash if it fits (see ``_native.pyi``)."""
        size = end - offset
        while True:
            with self._changed:
                at_frontier = offset <= self._frontier  # held in any case: it goes on at once
                fits = at_frontier or self._held_bytes + size <= self._window
                hashed_already = self._stopped or end <= self._frontier
                held = not hashed_already and fits and _WINDOW.take(size, force=at_frontier)
                if held:
                    replaced = self._held.pop(offset, None)
                    if replaced is not None:
                        self._release(len(replaced))
                    self._held[offset] = bytes(chunk)  # no copy for bytes
                    self._held_bytes += size
                if held or hashed_already or not self._progressing():
                    self._written.insert(offset, end)
                    self._changed.notify()
                    return
                seen = _WINDOW.generation
            _WINDOW.wait_release(seen, _SIGNAL_CHECK_INTERVAL)

    def _progressing(self) -> bool:
        """Whether the ordering thread has bytes at the frontier to consume."""
        first = min(self._held, default=None)
        return (first is not None and first <= self._frontier) or (
            self._written.covering(self._frontier) is not None
        )

    def _release(self, size: int) -> None:
        self._held_bytes -= size
        _WINDOW.give(size)

    def _release_all(self) -> None:
        self._held.clear()
        if self._held_bytes:
            _WINDOW.give(self._held_bytes)
            self._held_bytes = 0

    def _take_next(self) -> memoryview | tuple[int, int] | None:
        """A held chunk at the frontier (trimmed), or a span on disk to read back; None: none."""
        while self._held and (offset := min(self._held)) <= self._frontier:
            chunk = self._held.pop(offset)
            self._release(len(chunk))
            if offset + len(chunk) > self._frontier:
                start, self._frontier = self._frontier, offset + len(chunk)
                return memoryview(chunk)[start - offset :]
        on_disk_end = self._written.covering(self._frontier)
        if on_disk_end is None:
            return None
        start = self._frontier
        end = min(on_disk_end, min(self._held, default=on_disk_end), start + _READ_BACK_STEP)
        resumed = self._resumed.overlap(start, end)
        self._resumed_bytes += resumed
        self._read_back += end - start - resumed
        self._frontier = end
        return start, end - start

    def _next_step(self) -> memoryview | tuple[int, int] | None:
        """The next bytes to hash; None when done or cancelled; ValueError at a gap."""
        with self._changed:
            while not self._cancelled:
                piece = self._take_next()
                if piece is not None:
                    return piece
                if self._target is not None:
                    if self._frontier < self._target:
                        raise ValueError(
                            f"{self._path} is incomplete: no bytes written at offset "
                            f"{self._frontier}"
                        )
                    return None
                self._changed.wait()
            return None

    def _run(self) -> None:
        try:
            while (step := self._next_step()) is not None:
                if isinstance(step, tuple):
                    self._digest.update(_pread_all(self._fd, *step, self._path))
                else:
                    self._digest.update(step)
        except BaseException as error:  # raised by the next write or finish
            self._error = error
        finally:
            with self._changed:
                self._stopped = True
                self._release_all()

    def hashed(self) -> int:
        """Bytes hashed in file order so far (the frontier)."""
        return self._frontier

    def read_back(self) -> int:
        """Bytes that had to be read back from the file (they did not fit the window)."""
        return self._read_back

    def resumed_bytes(self) -> int:
        """Bytes of the resumed ``written`` intervals read back from the file."""
        return self._resumed_bytes

    def sync_data(self) -> None:
        """Flush the file's data to the disk (fdatasync)."""
        with self._open_fd() as fd:
            os.fdatasync(fd)

    def finish(self, fsync: bool = True) -> str:
        """Wait until every byte is hashed and checked; fsync, close; the hex SHA-256."""
        if not self._begin_closing():
            raise ValueError("I/O operation on a finished or aborted PartSink")
        with self._changed:
            self._target = self._written.end() if self._size is None else self._size
            self._changed.notify()
        self._thread.join()
        try:
            self._raise_failure()
            if fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
        self._blake3_hex = self._digest.blake3_hexdigest()
        return self._digest.hexdigest()

    def blake3_hexdigest(self) -> str | None:
        """The hex BLAKE3 of the whole file after ``finish``; None before, or unless blake3=True."""
        return self._blake3_hex

    def abort(self) -> None:
        """Stop hashing, release the held chunks and close the file; never raises."""
        with self._changed:
            self._cancelled = self._stopped = True
            self._release_all()
            self._changed.notify()
        self._thread.join()
        if self._begin_closing():
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _check_written(written: Sequence[tuple[int, int]], size: int | None, keep: bool) -> None:
    if written and not keep:
        raise ValueError("written intervals need keep=True (a new file holds nothing yet)")
    for start, end in written:
        if not 0 <= start <= end or (size is not None and end > size):
            raise ValueError(f"written interval ({start}, {end}) does not lie in the part file")


def _open_part(path: str, size: int | None, keep: bool) -> int:
    """Open the part file: created (or emptied) and sized, or kept (then exactly ``size`` bytes)."""
    fd = os.open(path, os.O_RDWR | (0 if keep else os.O_CREAT | os.O_TRUNC), 0o666)
    try:
        if size is not None and keep and (held := os.fstat(fd).st_size) != size:
            raise ValueError(f"cannot continue {path}: it holds {held} bytes, not {size}")
        if size is not None and not keep:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pread_all(fd: int, offset: int, length: int, path: str) -> bytes:
    """Read exactly ``length`` bytes at ``offset``; an OSError names ``path``."""
    pieces = []
    done = 0
    try:
        while done < length:
            piece = os.pread(fd, length - done, offset + done)
            if not piece:
                raise OSError(f"unexpected end of {path} at byte {offset + done}")
            pieces.append(piece)
            done += len(piece)
    except OSError as error:
        _add_filename(error, path)
        raise
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
