"""Pieces of a segmented download: PartWriter (both backends) and the range table.

The in-order hashing these tests once covered (the Python ``FileOrderDigest``) is now the native
``PartSink``'s: tests/test_part_sink.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ed_extractor.services.file_transfer.segment_table import SegmentTable
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
