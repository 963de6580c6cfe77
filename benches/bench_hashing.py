"""Benchmarks of the hashing backends: SHA-256, BLAKE3, the file and part sinks, file digests."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest
from tests.backends import backend_module

from benches.conftest import ThroughputTable

KIB = 1024
MIB = 1024 * KIB
CHUNK = 128 * KIB
HASH_TOTAL = 256 * MIB
SINK_TOTAL = 512 * MIB
SMOKE_TOTAL = 4 * MIB  # per round when benchmarks are disabled (the ordinary test run)
ROUNDS = 5
VERIFY_SLICE = 64 * MIB

IMPLEMENTATIONS = ["native", "python"]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> tuple[str, ModuleType]:
    return request.param, backend_module(request.param)


@pytest.fixture(scope="module")
def payload() -> memoryview:
    """256 MiB of pseudo-random bytes, generated once, outside any timing."""
    block = random.Random(0xED).randbytes(16 * MIB)
    return memoryview(block * (HASH_TOTAL // len(block)))


@pytest.fixture
def scratch_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs (``/dev/shm``) if there is one, so the disk does not set the pace."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="ed-bench-") as directory:
        yield Path(directory)


def hashlib_sha256(pieces: list[memoryview] | list[bytes]) -> str:
    """The reference digest of ``pieces``, from hashlib (outside any timing)."""
    reference = hashlib.sha256()
    for piece in pieces:
        reference.update(piece)
    return reference.hexdigest()


def chunks_of(payload: memoryview, total: int) -> list[memoryview]:
    """``total`` bytes as ``CHUNK``-sized views, cycling through the payload."""
    return [payload[offset % len(payload) :][:CHUNK] for offset in range(0, total, CHUNK)]


def bytes_chunks_of(payload: memoryview, total: int) -> list[bytes]:
    """``total`` bytes as ``CHUNK``-sized ``bytes`` (what httpx yields), cycling the payload.

    Each distinct chunk is one object, however often it recurs (``bytes`` are immutable).
    """
    distinct: dict[int, bytes] = {}
    pieces = []
    for offset in range(0, total, CHUNK):
        start = offset % len(payload)
        if start not in distinct:
            distinct[start] = bytes(payload[start : start + CHUNK])
        pieces.append(distinct[start])
    return pieces


@pytest.mark.benchmark(group="sha256-update")
def test_sha256_update(
    benchmark: Any,
    implementation: tuple[str, ModuleType],
    payload: memoryview,
    throughput_table: ThroughputTable,
) -> None:
    name, module = implementation
    total = SMOKE_TOTAL if benchmark.disabled else HASH_TOTAL
    pieces = chunks_of(payload, total)

    def hash_all() -> str:
        hasher = module.Sha256()
        for piece in pieces:
            hasher.update(piece)
        return str(hasher.hexdigest())

    digest = benchmark.pedantic(hash_all, rounds=ROUNDS, warmup_rounds=1)
    assert digest == hashlib_sha256(pieces)  # a fast wrong hash is no figure
    throughput_table.record(benchmark, "Sha256.update", name, total)


def stream_into_partsink(
    module: ModuleType, path: Path, pieces: Sequence[bytes | memoryview], *, blake3: bool = False
) -> tuple[str, str | None]:
    """One stream in order through ``PartSink`` (pwrite, in-order hash); its SHA-256 and BLAKE3."""
    sink = module.PartSink(path, len(pieces) * CHUNK, blake3=blake3)
    for index, piece in enumerate(pieces):
        sink.write(index * CHUNK, piece)
    assert sink.read_back() == 0  # one stream in order is never read back
    return str(sink.finish()), sink.blake3_hexdigest()


@pytest.mark.benchmark(group="partsink-write")
def test_partsink_write(
    benchmark: Any,
    implementation: tuple[str, ModuleType],
    payload: memoryview,
    scratch_dir: Path,
    throughput_table: ThroughputTable,
) -> None:
    name, module = implementation
    total = SMOKE_TOTAL if benchmark.disabled else SINK_TOTAL
    pieces = bytes_chunks_of(payload, total)
    path = scratch_dir / "sink.part"

    def fresh_file() -> None:
        path.unlink(missing_ok=True)

    def write_all() -> str:
        return stream_into_partsink(module, path, pieces)[0]

    digest = benchmark.pedantic(write_all, setup=fresh_file, rounds=ROUNDS, warmup_rounds=1)
    assert path.stat().st_size == total
    assert digest == hashlib_sha256(pieces)
    throughput_table.record(benchmark, "PartSink.write", name, total)


@pytest.mark.benchmark(group="partsink-blake3")
@pytest.mark.parametrize("with_blake3", [False, True], ids=["sha256", "sha256+blake3"])
def test_partsink_dual_hash(
    benchmark: Any,
    implementation: tuple[str, ModuleType],
    with_blake3: bool,
    payload: memoryview,
    scratch_dir: Path,
    throughput_table: ThroughputTable,
) -> None:
    """The sink with SHA-256 alone and with BLAKE3 beside it; both digests checked."""
    name, module = implementation
    total = SMOKE_TOTAL if benchmark.disabled else SINK_TOTAL
    pieces = bytes_chunks_of(payload, total)
    path = scratch_dir / "sink.part"
    digests: list[tuple[str, str | None]] = []

    def fresh_file() -> None:
        path.unlink(missing_ok=True)

    def write_all() -> None:
        digests.append(stream_into_partsink(module, path, pieces, blake3=with_blake3))

    benchmark.pedantic(write_all, setup=fresh_file, rounds=ROUNDS, warmup_rounds=1)
    sha256, blake3_hex = hashlib.sha256(), blake3.blake3()
    for piece in pieces:
        sha256.update(piece)
        blake3_hex.update(piece)
    expected = (sha256.hexdigest(), blake3_hex.hexdigest() if with_blake3 else None)
    assert set(digests) == {expected}
    column = f"{name}, {'sha256+blake3' if with_blake3 else 'sha256'}"
    throughput_table.record(benchmark, "PartSink dual hash", column, total)


@pytest.mark.benchmark(group="partsink-threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_partsink_threads(
    benchmark: Any,
    implementation: tuple[str, ModuleType],
    threads: int,
    payload: memoryview,
    scratch_dir: Path,
    throughput_table: ThroughputTable,
) -> None:
    """Each thread drives its own sink; the figure is the aggregate over all threads."""
    name, module = implementation
    total = SMOKE_TOTAL if benchmark.disabled else SINK_TOTAL
    pieces = chunks_of(payload, total)
    paths = [scratch_dir / f"sink-{index}.part" for index in range(threads)]

    def fresh_files() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def write_one(path: Path) -> None:
        stream_into_partsink(module, path, pieces)

    def write_all_in_parallel() -> None:
        workers = [threading.Thread(target=write_one, args=(path,)) for path in paths]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    benchmark.pedantic(write_all_in_parallel, setup=fresh_files, rounds=ROUNDS, warmup_rounds=1)
    assert all(path.stat().st_size == total for path in paths)
    throughput_table.record(benchmark, "threads", f"{name}-{threads}", total * threads)


# The file digests `verify` can use, each fed whole-file slices as `verify` feeds them.
DIGESTS: dict[str, tuple[str, Callable[[], Any]]] = {
    "native Blake3": ("blake3", lambda: backend_module("native").Blake3()),
    "blake3 package": ("blake3", lambda: blake3.blake3(max_threads=blake3.blake3.AUTO)),
    "native Sha256": ("sha256", lambda: backend_module("native").Sha256()),
    "hashlib sha256": ("sha256", hashlib.sha256),
}


@pytest.fixture(scope="module")
def reference_digests(payload: memoryview) -> dict[tuple[str, int], str]:
    """The digests of the payload's prefixes, by the single-threaded reference implementations."""
    references = {}
    for total in (SMOKE_TOTAL, HASH_TOTAL):
        references["blake3", total] = blake3.blake3(payload[:total]).hexdigest()
        references["sha256", total] = hashlib.sha256(payload[:total]).hexdigest()
    return references


@pytest.mark.benchmark(group="file-digest")
@pytest.mark.parametrize("implementation", list(DIGESTS))
def test_file_digest(
    benchmark: Any,
    implementation: str,
    payload: memoryview,
    reference_digests: dict[tuple[str, int], str],
    throughput_table: ThroughputTable,
) -> None:
    """What `verify` spends per file: 64 MiB slices into one hasher (BLAKE3 on every core)."""
    algo, new_hasher = DIGESTS[implementation]
    new_hasher()  # skips here, before any timing, when the implementation is not built
    total = SMOKE_TOTAL if benchmark.disabled else HASH_TOTAL
    slices = [payload[start : min(start + VERIFY_SLICE, total)]
              for start in range(0, total, VERIFY_SLICE)]  # fmt: skip

    def digest_all() -> str:
        hasher = new_hasher()
        for piece in slices:
            hasher.update(piece)
        return str(hasher.hexdigest())

    digest = benchmark.pedantic(digest_all, rounds=ROUNDS, warmup_rounds=1)
    assert digest == reference_digests[algo, total]
    throughput_table.record(benchmark, "digest", implementation, total)
