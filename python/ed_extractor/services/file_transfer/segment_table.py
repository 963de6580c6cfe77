"""The ranges of a download (who fetches what, what is written): ``SegmentTable``.

It hands pieces to connections from the front and splits the largest range in flight for an idle
one (work stealing); ``snapshot`` gives the progress the resume sidecar records.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import Final

from ed_extractor.services.file_transfer.resume import Segment

UNKNOWN_END: Final = 1 << 62  # the end of an open-ended range (a body of unknown length)


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

    def end_at(self, span: Range, end: int) -> None:
        """The open-ended ``span`` ended at ``end`` (the body of unknown length is complete)."""
        with self._lock:
            span.end = end

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
