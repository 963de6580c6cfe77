"""The resume sidecar: what a kept ``<name>.part`` needs to be continued (validator and length)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ed_extractor.paths import part_path

SIDECAR_SUFFIX = ".resume"


def sidecar_path(final_path: Path) -> Path:
    """``<name>.part.resume`` beside the part file."""
    part = part_path(final_path)
    return part.with_name(part.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class ResumePoint:
    """A part file that can be continued: same URL, same validator, same total length."""

    url: str
    validator: str  # the If-Range value: a strong ETag or a Last-Modified date
    total: int
    offset: int = 0  # bytes on disk; read from the part file, not stored


def save_resume_point(final_path: Path, point: ResumePoint) -> None:
    """Write the sidecar (before the body streams, so that even a kill -9 leaves it behind)."""
    data = asdict(point)
    del data["offset"]
    sidecar_path(final_path).write_text(json.dumps(data))  # torn by a crash: discarded on load


def load_resume_point(final_path: Path, url: str) -> ResumePoint | None:
    """The resume point of a kept part file for ``url``; None (and both files removed) otherwise."""
    part, sidecar = part_path(final_path), sidecar_path(final_path)
    try:
        data = json.loads(sidecar.read_text())
        point = ResumePoint(
            url=str(data["url"]), validator=str(data["validator"]), total=int(data["total"])
        )
        offset = part.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        discard_part(final_path)
        return None
    if point.url != url or not 0 < offset < point.total:
        discard_part(final_path)
        return None
    return ResumePoint(point.url, point.validator, point.total, offset)


def discard_part(final_path: Path) -> None:
    """Remove the part file and its sidecar, if any."""
    part_path(final_path).unlink(missing_ok=True)
    sidecar_path(final_path).unlink(missing_ok=True)
