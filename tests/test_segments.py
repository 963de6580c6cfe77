"""Pieces of a segmented download: PartWriter (both backends), the range table, in-order hashing."""

from __future__ import annotations

import hashlib
import random
import threading
from pathlib import Path

import pytest

from ed_extractor.services.file_transfer.segment_table import (
    FileOrderDigest,
    ReorderBudget,
    SegmentTable,
)
from tests.backends import BACKENDS, backend_module


@pytest.mark.parametrize("backend", BACKENDS)
def test_part_writer_writes_and_reads_at_offsets(backend: str, tmp_path: Path) -> None:
    part_writer = backend_module(backend).PartWriter
    path = tmp_path / "f.part"
    writer = part_writer(path, 10)
    assert path.stat().st_size == 10  # sized at once
    assert writer.pwrite(b"world", 5) == 5
    assert writer.pwrite(memoryview(b"hello"), 0) == 5
    assert writer.pread(3, 4) == b"lowo"
    writer.sync_data()
    writer.sync()
    writer.close()
    writer.close()  # idempotent
    assert path.read_bytes() == b"helloworld"
    with pytest.raises(ValueError, match="closed"):
        writer.pwrite(b"x", 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_part_writer_refuses_bytes_outside_the_file(backend: str, tmp_path: Path) -> None:
    writer = backend_module(backend).PartWriter(tmp_path / "f.part", 4)
    with pytest.raises(ValueError, match="outside"):
        writer.pwrite(b"abc", 2)
    with pytest.raises(ValueError, match="outside"):
        writer.pread(3, 2)
    writer.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_part_writer_continues_only_a_file_of_the_recorded_size(
    backend: str, tmp_path: Path
) -> None:
    part_writer = backend_module(backend).PartWriter
    path = tmp_path / "f.part"
    path.write_bytes(b"abcdef")
    kept = part_writer(path, 6, keep=True)
    assert kept.pread(0, 6) == b"abcdef"  # kept as it is
    kept.close()
    with pytest.raises(ValueError, match="holds 6 bytes"):
        part_writer(path, 8, keep=True)
    with pytest.raises(FileNotFoundError):
        part_writer(tmp_path / "missing.part", 8, keep=True)


def test_connections_take_pieces_from_the_front_then_steal_half_of_the_largest() -> None:
    table = SegmentTable(((0, 0, 100),), piece=50, min_split=10)
    first, second = table.take(), table.take()
    assert first is not None
    assert second is not None
    assert [(first.start, first.end), (second.start, second.end)] == [(0, 50), (50, 100)]
    assert table.claim(first, 20) == (0, 20)
    table.wrote(first, 20)
    assert table.claim(second, 50) == (50, 50)
    table.wrote(second, 50)
    stolen = table.take()  # the second is done; the first has 30 bytes left: 15 are taken over
    assert stolen is not None
    assert (stolen.start, stolen.end) == (35, 50)
    assert table.claim(first, 100) == (20, 15)  # the first now stops where the stolen half starts
    assert table.snapshot() == ((0, 20, 35), (35, 35, 50), (50, 100, 100))
    assert table.take() is None  # 15 bytes left in each: too small to split again


@pytest.mark.parametrize("window", [0, 64, 1 << 20], ids=["no-window", "small", "large"])
def test_the_digest_follows_file_order_whatever_order_the_ranges_arrive_in(
    window: int, tmp_path: Path
) -> None:
    rng = random.Random(7)
    body = rng.randbytes(50_000)
    table = SegmentTable(((0, 0, len(body)),), piece=10_000, min_split=1 << 30)
    spans = [table.take() for _ in range(5)]
    part_writer = backend_module("python").PartWriter
    writer = part_writer(tmp_path / "f.part", len(body))
    checked = bytearray()
    blake2 = hashlib.blake2b()
    budget = ReorderBudget(window)
    digest = FileOrderDigest(writer, table, len(body), checked.extend, window=budget, also=[blake2])
    pieces = []
    for span in spans:
        assert span is not None
        for start in range(span.start, span.end, 1000):
            pieces.append((span, start, body[start : min(start + 1000, span.end)]))
    rng.shuffle(pieces)  # each range in order, the ranges interleaved at random
    pieces.sort(key=lambda piece: piece[1] - piece[0].start)

    def deliver() -> None:
        for span, start, chunk in pieces:
            offset, count = table.claim(span, len(chunk))
            assert (offset, count) == (start, len(chunk))
            digest.offer(offset, chunk)
            writer.pwrite(chunk, offset)
            table.wrote(span, count)
            digest.advanced()

    thread = threading.Thread(target=deliver)
    thread.start()
    thread.join()
    assert digest.finish() == hashlib.sha256(body).hexdigest()
    assert bytes(checked) == body  # the content check saw the file in order
    assert blake2.hexdigest() == hashlib.blake2b(body).hexdigest()  # so did every other hasher
    if window == 0:
        assert digest.read_back > 0  # what did not fit was read back from the part file
    assert budget.held == 0  # every chunk held was given back
    writer.close()


def test_digests_running_at_once_share_one_window(tmp_path: Path) -> None:
    budget = ReorderBudget(3000)
    part_writer = backend_module("python").PartWriter
    digests, writers = [], []
    for n in range(2):
        table = SegmentTable(((0, 0, 10_000),), piece=5000, min_split=1 << 30)
        writer = part_writer(tmp_path / f"{n}.part", 10_000)
        digests.append(FileOrderDigest(writer, table, 10_000, None, window=budget))
        writers.append(writer)
    digests[0].offer(5000, b"a" * 2000)  # early chunks: held while the shared window has room
    digests[1].offer(5000, b"b" * 1000)
    assert budget.held == 3000
    digests[1].offer(7000, b"c" * 1000)  # the window is full: read back later instead
    assert budget.held == 3000
    digests[0].offer(0, b"d" * 1000)  # at the frontier: always held (the hash takes it next)
    assert budget.held >= 3000
    for digest in digests:
        digest.stop()
    assert budget.held == 0  # a stopped digest gives back what it held
    for writer in writers:
        writer.close()
