"""Write the part files and sidecars of tests/data/resume-v1/ with the release that made them.

Run once with the release whose resume format the files preserve (before the one-engine
redesign): ``python tests/data/make_resume_v1.py``. The payload is ``payload()`` below; the tests
serve it and check that a download continues each kept part file to the right bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

from ed_extractor.services.file_transfer.resume import ResumePoint, save_resume_point

HERE = Path(__file__).parent / "resume-v1"
SIZE = 1 << 20
ETAG = '"resume-v1"'


def payload() -> bytes:
    """The file every kept part belongs to."""
    return random.Random(1).randbytes(SIZE)


def main() -> None:
    data = payload()
    # one connection: the part file is a prefix; the sidecar says no progress (its length does)
    single = HERE / "single" / "file.bin"
    single.parent.mkdir(parents=True, exist_ok=True)
    (single.parent / "file.bin.part").write_bytes(data[:300_000])
    save_resume_point(single, ResumePoint("URL", ETAG, SIZE))
    # several connections: a preallocated part file, each range written up to a point
    segmented = HERE / "segmented" / "file.bin"
    segmented.parent.mkdir(parents=True, exist_ok=True)
    ranges = ((0, 200_000, 400_000), (400_000, 400_000, 700_000), (700_000, 900_000, SIZE))
    part = bytearray(SIZE)
    for start, written, _ in ranges:
        part[start:written] = data[start:written]
    (segmented.parent / "file.bin.part").write_bytes(bytes(part))
    save_resume_point(segmented, ResumePoint("URL", ETAG, SIZE, segments=ranges))


if __name__ == "__main__":
    main()
