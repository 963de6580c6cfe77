"""The S3 resume sidecar: which segments of which object version are complete in the part file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer.resume import discard_part, sidecar_path


@dataclass
class S3ResumeState:
    """An object version (URL, ETag, size, segment plan) and the segments already on disk."""

    url: str
    etag: str
    total: int
    segments: list[tuple[int, int]]  # (start, length) of each request, in file order
    done: set[int] = field(default_factory=set)

    def save(self, final_path: Path) -> None:
        """Write the sidecar atomically (a kill -9 leaves the old or the new one, never half)."""
        data = {**asdict(self), "done": sorted(self.done)}
        sidecar = sidecar_path(final_path)
        temporary = sidecar.with_name(sidecar.name + ".new")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, sidecar)

    def contiguous_end(self, on_disk: int) -> int:
        """Where the first segment not both recorded complete and on disk starts."""
        end = 0
        for index, (start, length) in enumerate(self.segments):
            if index not in self.done or start + length > on_disk:
                break
            end = start + length
        return end


def load_state(final_path: Path, fresh: S3ResumeState) -> tuple[S3ResumeState, int]:
    """The state to continue and the bytes to keep: the sidecar's if it is for ``fresh``'s object.

    The part file is cut back to the end of the complete segments it holds; anything else (no
    sidecar, another object version, another plan) discards the part file and starts afresh.
    """
    part = part_path(final_path)
    try:
        data = json.loads(sidecar_path(final_path).read_text())
        kept = S3ResumeState(
            url=str(data["url"]),
            etag=str(data["etag"]),
            total=int(data["total"]),
            segments=[(int(start), int(length)) for start, length in data["segments"]],
            done={int(index) for index in data["done"]},
        )
        on_disk = part.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        discard_part(final_path)
        return fresh, 0
    same = (kept.url, kept.etag, kept.total, kept.segments) == (
        fresh.url,
        fresh.etag,
        fresh.total,
        fresh.segments,
    )
    offset = kept.contiguous_end(on_disk) if same else 0
    if offset == 0:
        discard_part(final_path)
        return fresh, 0
    os.truncate(part, offset)
    kept.done = {i for i, (start, length) in enumerate(kept.segments) if start + length <= offset}
    return kept, offset
