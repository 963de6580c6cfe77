"""The resume sidecar: what a kept ``<name>.part`` needs to go on (validator, length, ranges)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ed_extractor.paths import part_path

SIDECAR_SUFFIX = ".resume"

#: One range of a segmented part file: ``(start, written_up_to, end)``, end exclusive.
Segment = tuple[int, int, int]


def sidecar_path(final_path: Path) -> Path:
    """``<name>.part.resume`` beside the part file."""
    part = part_path(final_path)
    return part.with_name(part.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class ResumePoint:
    """A part file that can be continued: same URL, same validator, same total length.

    A part file written by one connection is a prefix: ``offset`` is its length (read from the
    file, not stored). A segmented one is preallocated to ``total`` bytes and ``segments`` say
    which bytes of each range are written.
    """

    url: str
    validator: str  # the If-Range value: a strong ETag or a Last-Modified date
    total: int
    offset: int = 0
    segments: tuple[Segment, ...] = ()


def save_resume_point(final_path: Path, point: ResumePoint) -> None:
    """Write the sidecar (before the body streams, so that even a kill -9 leaves it behind).

    The JSON goes in one ``pwrite`` at offset 0, padded with blanks over any longer old content
    and never truncated first: a kill at any moment leaves either the old or the new state.
    """
    data: dict[str, object] = {"url": point.url, "validator": point.validator, "total": point.total}
    if point.segments:
        data["segments"] = [list(segment) for segment in point.segments]
    encoded = json.dumps(data, separators=(",", ":")).encode()
    fd = os.open(sidecar_path(final_path), os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        held = os.fstat(fd).st_size
        os.pwrite(fd, encoded.ljust(held), 0)
    finally:
        os.close(fd)


def _segments_fit(segments: tuple[Segment, ...], total: int) -> bool:
    """True when the ranges tile ``[0, total)`` in order, each written up to a point inside it."""
    expected_start = 0
    for start, written, end in segments:
        if start != expected_start or not start <= written <= end or start >= end:
            return False
        expected_start = end
    return expected_start == total


def load_resume_point(final_path: Path, url: str) -> ResumePoint | None:
    """The resume point of a kept part file for ``url``; None (and both files removed) otherwise."""
    part, sidecar = part_path(final_path), sidecar_path(final_path)
    try:
        data = json.loads(sidecar.read_text())
        segments = tuple(
            (int(start), int(written), int(end)) for start, written, end in data.get("segments", ())
        )
        point = ResumePoint(
            url=str(data["url"]),
            validator=str(data["validator"]),
            total=int(data["total"]),
            segments=segments,
        )
        size = part.stat().st_size
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        discard_part(final_path)
        return None
    if point.url != url:
        discard_part(final_path)
        return None
    if segments:
        if size != point.total or not _segments_fit(segments, point.total):
            discard_part(final_path)
            return None
        return point
    if not 0 < size < point.total:
        discard_part(final_path)
        return None
    return ResumePoint(point.url, point.validator, point.total, size)


def discard_part(final_path: Path) -> None:
    """Remove the part file and its sidecar, if any."""
    part_path(final_path).unlink(missing_ok=True)
    sidecar_path(final_path).unlink(missing_ok=True)
