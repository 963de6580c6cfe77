"""Seeded, byte-reproducible Spansh-style dumps and a Spansh-like mirror tree of them."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from isal import isal_zlib

from ed_extractor.demo.records import RecordKind, RecordSpec, render_records

log = logging.getLogger(__name__)

#: Bumped whenever the bytes produced for the same parameters change; invalidates old stamps.
GENERATOR_VERSION: Final = 1
STAMP_NAME: Final = ".mirror.json"
COMPRESS_LEVEL: Final = 1
_CHUNK_TEXT_BYTES: Final = 6_000_000  # uncompressed JSON per worker job
_MIN_RECORDS: Final = 10
_PARALLEL_MIN_JOBS: Final = 4  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class DumpStats:
    """What one generated dump file holds."""

    path: Path
    bytes: int
    uncompressed_bytes: int
    records: int
    sha256: str

    @property
    def name(self) -> str:
        """The file name, as served by the mirror."""
        return self.path.name


@dataclass(frozen=True)
class MirrorFile:
    """One file of the mirror tree: name, contents, share of the total size, gzip bytes/record."""

    name: str
    spec: RecordSpec
    share: float
    record_bytes: float  # measured on large dumps; sizes the file without a calibration pass


_SYSTEMS: Final = RecordSpec(kind="systems")

#: The mirror tree, named as on https://downloads.spansh.co.uk/; ``galaxy.json.gz`` is the big one.
MIRROR_LAYOUT: Final = (
    MirrorFile("galaxy.json.gz", RecordSpec(), 0.40, 1045),
    MirrorFile("galaxy_1month.json.gz", RecordSpec(window_days=32), 0.08, 1045),
    MirrorFile("galaxy_7days.json.gz", RecordSpec(window_days=7), 0.05, 1045),
    MirrorFile("galaxy_1day.json.gz", RecordSpec(window_days=1), 0.02, 1045),
    MirrorFile("galaxy_populated.json.gz", RecordSpec(populated=True), 0.12, 4150),
    MirrorFile("galaxy_stations.json.gz", RecordSpec(stations=True), 0.12, 2580),
    MirrorFile("systems.json.gz", _SYSTEMS, 0.12, 60.1),
    MirrorFile("systems_6months.json.gz", replace(_SYSTEMS, window_days=183), 0.04, 58.6),
    MirrorFile("systems_1month.json.gz", replace(_SYSTEMS, window_days=32), 0.02, 57.9),
    MirrorFile("systems_2weeks.json.gz", replace(_SYSTEMS, window_days=14), 0.01, 57.2),
    MirrorFile("systems_1week.json.gz", replace(_SYSTEMS, window_days=7), 0.01, 57.1),
    MirrorFile("systems_1day.json.gz", replace(_SYSTEMS, window_days=1), 0.005, 56.0),
    MirrorFile("systems_neutron.json.gz", replace(_SYSTEMS, main_star="Neutron Star"), 0.005, 57.6),
)


# --- gzip assembly -------------------------------------------------------------------------------
# Chunks are compressed independently (in parallel) as raw deflate; every chunk but the last ends
# with a sync flush, so their concatenation is one valid deflate stream (the pigz technique) inside
# a single gzip member. The CRC-32 of the whole is combined from the chunks' CRCs (ISA-L's
# crc32_combine, zlib's algorithm).


def _gzip_header(level: int) -> bytes:
    """A gzip member header without file name and with mtime 0, so output is reproducible."""
    xfl = 4 if level == 1 else 2 if level == 9 else 0
    return b"\x1f\x8b\x08\x00" + struct.pack("<IBB", 0, xfl, 255)


@dataclass(frozen=True)
class _ChunkJob:
    spec: RecordSpec
    seed_key: str
    index: int
    count: int
    last: bool
    level: int


def _render_chunk(job: _ChunkJob) -> tuple[bytes, int, int]:
    """Render and deflate one chunk; return (deflate bytes, CRC-32, uncompressed length)."""
    rng = random.Random(f"{job.seed_key}/{job.index}")
    parts = ["[\n"] if job.index == 0 else []
    if job.count:
        parts.append(",\n".join(render_records(job.spec, rng, job.count)))
        parts.append("\n]\n" if job.last else ",\n")
    else:  # only an empty dump has an empty chunk
        parts.append("]\n")
    data = "".join(parts).encode("ascii")
    deflate = zlib.compressobj(job.level, zlib.DEFLATED, -15, 9)
    out = deflate.compress(data) + deflate.flush(zlib.Z_FINISH if job.last else zlib.Z_SYNC_FLUSH)
    return out, zlib.crc32(data), len(data)


def _chunk_records(spec: RecordSpec) -> int:
    approx = 190 if spec.kind == "systems" else 17_000 if spec.populated else 4_000
    return max(1, _CHUNK_TEXT_BYTES // approx)


def _jobs(spec: RecordSpec, systems: int, seed_key: str, level: int) -> list[_ChunkJob]:
    per_chunk = _chunk_records(spec)
    n_chunks = max(1, -(-systems // per_chunk))
    return [
        _ChunkJob(
            spec=spec,
            seed_key=seed_key,
            index=i,
            count=min(per_chunk, systems - i * per_chunk),
            last=i == n_chunks - 1,
            level=level,
        )
        for i in range(n_chunks)
    ]


def _seed_key(seed: int, spec: RecordSpec) -> str:
    return (
        f"{seed}/{spec.kind}/{spec.populated}/{spec.stations}/{spec.main_star}/{spec.window_days}"
    )


def _default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _results(
    jobs: list[_ChunkJob], executor: Executor | None, window: int
) -> Iterator[tuple[bytes, int, int]]:
    """Chunk results in job order, at most ``window`` jobs in flight."""
    if executor is None:
        yield from map(_render_chunk, jobs)
        return
    pending: deque[Future[tuple[bytes, int, int]]] = deque()
    for job in jobs:
        pending.append(executor.submit(_render_chunk, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _write_dump(
    path: Path, jobs: list[_ChunkJob], results: Iterable[tuple[bytes, int, int]]
) -> DumpStats:
    """Assemble chunk results into ``path`` atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    sha = hashlib.sha256()
    crc, length, size = 0, 0, 0
    try:
        with tmp.open("wb") as out:
            header = _gzip_header(jobs[0].level)
            out.write(header)
            sha.update(header)
            size += len(header)
            for deflated, chunk_crc, chunk_len in results:
                out.write(deflated)
                sha.update(deflated)
                size += len(deflated)
                crc = isal_zlib.crc32_combine(crc, chunk_crc, chunk_len)
                length += chunk_len
            trailer = struct.pack("<II", crc, length & 0xFFFFFFFF)
            out.write(trailer)
            sha.update(trailer)
            size += len(trailer)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return DumpStats(path, size, length, sum(job.count for job in jobs), sha.hexdigest())


def _executor(workers: int, parallel: bool) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` processes, or None to work in-process (small jobs, one worker)."""
    if workers <= 1 or not parallel:
        return None
    # spawn, not fork: forking next to server threads (tests, the demo) can deadlock.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def generate_dump(
    path: Path,
    *,
    systems: int,
    seed: int,
    populated: bool,
    stations: bool,
    kind: RecordKind = "galaxy",
    main_star: str | None = None,
    window_days: float = 3650.0,
    compresslevel: int = COMPRESS_LEVEL,
    workers: int | None = None,
) -> DumpStats:
    """Write one gzip'd Spansh-style dump of ``systems`` records to ``path``.

    ``populated``: every system inhabited; ``stations``: every system has a station; neither:
    the galaxy-wide mix. ``kind="systems"`` writes the minimal ``systems*.json`` records instead.
    The same arguments always give the same bytes, whatever ``workers`` is.
    """
    spec = RecordSpec(
        kind=kind,
        populated=populated,
        stations=stations,
        main_star=main_star,
        window_days=window_days,
    )
    jobs = _jobs(spec, systems, _seed_key(seed, spec), compresslevel)
    n_workers = _default_workers() if workers is None else workers
    executor = _executor(n_workers, parallel=len(jobs) >= _PARALLEL_MIN_JOBS)
    try:
        return _write_dump(Path(path), jobs, _results(jobs, executor, 2 * n_workers))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)


def _plan(scale_mb: int, seed: int) -> list[tuple[MirrorFile, int, int]]:
    """(file, records, derived seed) for each file of the layout at ``scale_mb``."""
    plan = []
    for entry in MIRROR_LAYOUT:
        records = max(_MIN_RECORDS, round(scale_mb * 1_000_000 * entry.share / entry.record_bytes))
        file_seed = int.from_bytes(hashlib.sha256(f"{seed}/{entry.name}".encode()).digest()[:8])
        plan.append((entry, records, file_seed))
    return plan


def _read_stamp(root: Path, params: dict[str, int]) -> list[DumpStats] | None:
    """The stamp's file list if it matches ``params``; None when absent or stale."""
    try:
        stamp = json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("params") != params:
        return None
    try:
        return [
            DumpStats(
                root / f["name"], f["bytes"], f["uncompressed_bytes"], f["records"], f["sha256"]
            )
            for f in stamp["files"]
        ]
    except (KeyError, TypeError):
        return None


def _write_stamp(root: Path, params: dict[str, int], stats: list[DumpStats]) -> None:
    files = [
        {
            "name": s.name,
            "bytes": s.bytes,
            "uncompressed_bytes": s.uncompressed_bytes,
            "records": s.records,
            "sha256": s.sha256,
        }
        for s in stats
    ]
    tmp = root / f"{STAMP_NAME}.tmp"
    tmp.write_text(json.dumps({"params": params, "files": files}, indent=2) + "\n")
    os.replace(tmp, root / STAMP_NAME)


def generate_mirror(
    root: Path, *, scale_mb: int = 200, seed: int = 1, workers: int | None = None
) -> list[DumpStats]:
    """Write the Spansh-like tree of ``MIRROR_LAYOUT`` under ``root``: about ``scale_mb`` MB gzip.

    Reuses the files when the stamp (written last) matches the parameters and every file has the
    stamped size; otherwise regenerates what is missing or wrong. Work is spread over ``workers``
    spawned processes (default: the usable CPUs), so a calling script needs the usual
    ``if __name__ == "__main__":`` guard; ``workers=1`` stays in-process.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    level = COMPRESS_LEVEL
    params = {"generator": GENERATOR_VERSION, "scale_mb": scale_mb, "seed": seed, "level": level}
    stamped = _read_stamp(root, params)
    if stamped is not None and all(_size(s.path) == s.bytes for s in stamped):
        log.info("mirror at %s is up to date (%d files)", root, len(stamped))
        return stamped
    (root / STAMP_NAME).unlink(missing_ok=True)

    started = time.perf_counter()
    plan = _plan(scale_mb, seed)
    stats, todo = _reuse_or_plan(root, plan, stamped or [], level)
    stats.update(_write_dumps(todo, _default_workers() if workers is None else workers))
    ordered = [stats[entry.name] for entry, _, _ in plan]
    _write_stamp(root, params, ordered)
    log.info(
        "mirror at %s: %d files, %.1f MB in %.1fs",
        root,
        len(ordered),
        sum(s.bytes for s in ordered) / 1e6,
        time.perf_counter() - started,
    )
    return ordered


def _reuse_or_plan(
    root: Path, plan: list[tuple[MirrorFile, int, int]], stamped: list[DumpStats], level: int
) -> tuple[dict[str, DumpStats], list[tuple[Path, list[_ChunkJob]]]]:
    """The stats of planned files still on disk as stamped, and the chunk jobs of the others."""
    known = {s.name: s for s in stamped}
    reused: dict[str, DumpStats] = {}
    todo: list[tuple[Path, list[_ChunkJob]]] = []
    for entry, records, file_seed in plan:
        path = root / entry.name
        old = known.get(entry.name)
        if old is not None and old.records == records and _size(path) == old.bytes:
            reused[entry.name] = old
        else:
            todo.append((path, _jobs(entry.spec, records, _seed_key(file_seed, entry.spec), level)))
    return reused, todo


def _write_dumps(todo: list[tuple[Path, list[_ChunkJob]]], workers: int) -> dict[str, DumpStats]:
    """Write each file of ``todo`` from its chunk jobs, rendered by ``workers`` processes."""
    all_jobs = [job for _, jobs in todo for job in jobs]
    executor = _executor(workers, parallel=len(all_jobs) >= _PARALLEL_MIN_JOBS)
    stats: dict[str, DumpStats] = {}
    try:
        results = _results(all_jobs, executor, 2 * workers)
        for path, jobs in todo:
            t0 = time.perf_counter()
            stat = _write_dump(path, jobs, (next(results) for _ in jobs))
            stats[path.name] = stat
            log.info(
                "wrote %s: %.1f MB gzip, %.1f MB JSON, %d records in %.1fs",
                path.name,
                stat.bytes / 1e6,
                stat.uncompressed_bytes / 1e6,
                stat.records,
                time.perf_counter() - t0,
            )
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return stats


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
