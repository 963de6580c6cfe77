"""The ranges of a segmented part file (who fetches what, what is written) and the in-order hash.

``SegmentTable`` hands pieces to connections from the front and splits the largest range in
flight for an idle one; ``FileOrderDigest`` hashes and checks the file in order as its written
prefix grows, holding chunks that arrived early within a ``ReorderBudget`` that every segmented
download of the process shares (so ``--parallel K`` does not multiply it).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ed_extractor.hashing import PartWriter, Sha256
from ed_extractor.services.file_transfer.overlap import ChunkWorker
from ed_extractor.services.file_transfer.resume import Segment

REORDER_WINDOW: Final = 32 << 20  # chunks held in memory for the in-order hashes, at most
READ_BACK: Final = 256 << 10  # bytes read back per step beyond the window (bounds the check queue)


class ReorderBudget:
    """The bytes of early chunks the in-order digests may hold at once; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """The bytes held now."""
        return self._held

    def take(self, size: int, *, force: bool = False) -> bool:
        """Hold ``size`` more bytes if they fit (always with ``force``); True when held."""
        with self._lock:
            if not force and self._held + size > self.limit:
                return False
            self._held += size
            return True

    def give(self, size: int) -> None:
        """Release ``size`` bytes taken before."""
        with self._lock:
            self._held -= size


SHARED_REORDER_WINDOW: Final = ReorderBudget(REORDER_WINDOW)  # every digest of the process


class Hasher(Protocol):
    """What FileOrderDigest feeds: anything hashlib-shaped."""

    def update(self, data: bytes | memoryview, /) -> None:
        """Hash the next bytes."""


@dataclass
class Range:
    """One range ``[start, end)`` of the part file, claimed and written up to a point."""

    start: int
    written: int
    end: int
    claimed: int
    busy: bool = False


class SegmentTable:
    """The ranges of one part file: who fetches what, what is written; thread-safe."""

    def __init__(self, segments: tuple[Segment, ...], *, piece: int, min_split: int) -> None:
        self._lock = threading.Lock()
        self._piece = piece
        self._min_split = min_split
        self._ranges = [Range(start, written, end, written) for start, written, end in segments]
        self._starts = [r.start for r in self._ranges]
        self.received = 0  # bytes written by this run's connections

    def _insert(self, span: Range) -> None:
        index = bisect.bisect(self._starts, span.start)
        self._ranges.insert(index, span)
        self._starts.insert(index, span.start)

    def set_piece(self, piece: int) -> None:
        """Take pieces of ``piece`` bytes from now on (the number of connections changed)."""
        with self._lock:
            self._piece = piece

    def take(self) -> Range | None:
        """A range for an idle connection, or None when nothing is worth taking.

        The next piece from the front of what nobody fetches (a tail under 1.25 pieces is taken
        whole), else half of the largest range in flight (work stealing).
        """
        with self._lock:
            for candidate in self._ranges:
                if not candidate.busy and candidate.claimed < candidate.end:
                    if candidate.end - candidate.claimed > self._piece + self._piece // 4:
                        cut = candidate.claimed + self._piece
                        self._insert(Range(cut, cut, candidate.end, cut))
                        candidate.end = cut
                    candidate.busy = True
                    return candidate
            busy = [r for r in self._ranges if r.busy and r.end - r.claimed >= 2 * self._min_split]
            if not busy:
                return None
            victim = max(busy, key=lambda r: r.end - r.claimed)
            middle = victim.claimed + (victim.end - victim.claimed) // 2
            stolen = Range(middle, middle, victim.end, middle, busy=True)
            victim.end = middle
            self._insert(stolen)
            return stolen

    def claim(self, span: Range, length: int) -> tuple[int, int]:
        """Reserve up to ``length`` bytes after ``span``'s claimed ones: ``(offset, count)``."""
        with self._lock:
            offset = span.claimed
            count = max(0, min(length, span.end - offset))
            span.claimed += count
            return offset, count

    def wrote(self, span: Range, count: int) -> None:
        """``count`` claimed bytes of ``span`` are on disk."""
        with self._lock:
            span.written += count
            self.received += count

    def release(self, span: Range) -> None:
        """``span``'s connection stopped; another may take over what it left."""
        with self._lock:
            span.busy = False
            span.claimed = span.written

    def complete(self) -> bool:
        """True when every byte of the file is written."""
        with self._lock:
            return all(r.written == r.end for r in self._ranges)

    def written_after(self, offset: int) -> int:
        """The end of the bytes written contiguously from ``offset`` inside its range."""
        with self._lock:
            index = bisect.bisect(self._starts, offset) - 1
            span = self._ranges[index]
            return max(offset, span.written) if offset < span.end else offset

    def snapshot(self) -> tuple[Segment, ...]:
        """Every range as ``(start, written, end)`` for the sidecar, complete neighbours merged."""
        merged: list[Segment] = []
        with self._lock:
            for r in self._ranges:
                if merged and merged[-1][1] == merged[-1][2] == r.start:
                    merged[-1] = (merged[-1][0], r.written, r.end)
                else:
                    merged.append((r.start, r.written, r.end))
        return tuple(merged)


class FileOrderDigest:
    """SHA-256 and the content check over the part file in file order, on a thread of its own.

    Connections ``offer`` each chunk they wrote; one that lies at the hashed frontier, or fits in
    the reorder window (shared with the other digests of the process), is kept until the frontier
    reaches it; any other is read back from the part file when its turn comes.
    """

    def __init__(
        self,
        writer: PartWriter,
        table: SegmentTable,
        total: int,
        check: Callable[[bytes], object] | None,
        window: ReorderBudget = SHARED_REORDER_WINDOW,
        also: Sequence[Hasher] = (),
    ) -> None:
        """``also``: more hashers (e.g. BLAKE3) fed the same bytes in file order."""
        self._writer = writer
        self._table = table
        self._total = total
        self._window = window
        self._hash = Sha256()
        self._hashers: tuple[Hasher, ...] = (self._hash, *also)
        self._checker = ChunkWorker(check, name="check") if check is not None else None
        self._pending: dict[int, bytes | memoryview] = {}
        self._pending_bytes = 0
        self._done = 0
        self._stopped = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self.read_back = 0  # bytes read back from the part file (beyond the window)
        self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
        self._thread.start()

    def offer(self, offset: int, chunk: bytes | memoryview) -> None:
        """``chunk`` will be written at ``offset``: keep it for the hash if it fits the window."""
        with self._changed:
            keep = offset >= self._done and self._window.take(
                len(chunk), force=offset == self._done
            )
            if keep:
                replaced = self._pending.pop(offset, None)  # a range fetched again
                if replaced is not None:
                    self._pending_bytes -= len(replaced)
                    self._window.give(len(replaced))
                self._pending[offset] = chunk
                self._pending_bytes += len(chunk)

    @property
    def error(self) -> BaseException | None:
        """What stopped the hashing thread (a failed content check, a read error), if anything."""
        return self._error

    def advanced(self) -> None:
        """Bytes were written: wake the hashing thread."""
        with self._changed:
            self._changed.notify()

    def _next(self) -> tuple[bytes | memoryview | None, int] | None:
        """The next piece in file order: a kept chunk, or a span to read back; None: stop."""
        with self._changed:
            while not self._stopped and self._done < self._total:
                chunk = self._pending.pop(self._done, None)
                if chunk is not None:
                    self._pending_bytes -= len(chunk)
                    self._window.give(len(chunk))
                    return chunk, len(chunk)
                available = self._table.written_after(self._done) - self._done
                if available > 0:
                    later = [o for o in self._pending if o > self._done]
                    limit = min(later, default=self._total) - self._done
                    return None, min(available, READ_BACK, limit)
                self._changed.wait(0.5)
            return None

    def _run(self) -> None:
        try:
            while (piece := self._next()) is not None:
                chunk, length = piece
                if chunk is None:
                    chunk = self._writer.pread(self._done, length)
                    self.read_back += length
                for hasher in self._hashers:
                    hasher.update(chunk)
                if self._checker is not None:
                    self._checker.put(bytes(chunk) if isinstance(chunk, memoryview) else chunk)
                with self._changed:
                    self._done += length
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def stop(self) -> None:
        """Stop hashing (a failed download) and release the chunks held; never raises."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join()
        self._release()
        if self._checker is not None:
            self._checker.cancel()

    def _release(self) -> None:
        """Give the chunks still held back to the shared window."""
        with self._changed:
            self._window.give(self._pending_bytes)
            self._pending.clear()
            self._pending_bytes = 0

    def finish(self) -> str:
        """Wait until the whole file is hashed and checked; return its SHA-256 hex."""
        self._thread.join()
        self._release()
        if self._error is not None:
            if self._checker is not None:
                self._checker.cancel()
            raise self._error
        if self._checker is not None:
            self._checker.close()
        if self._done != self._total:
            raise RuntimeError(f"hashed {self._done} of {self._total} bytes")
        return self._hash.hexdigest()
