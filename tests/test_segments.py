"""Pieces of a segmented download: the range table.

The in-order hashing these tests once covered (the Python ``FileOrderDigest``) is now the native
``PartSink``'s, and so is the part file the removed PartWriter wrote at offsets (its sizing, kept
files and refused offsets): tests/test_part_sink.py.
"""

from __future__ import annotations

from ed_extractor.services.file_transfer.segment_table import SegmentTable


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
