"""PartSink: a part file written at offsets by many threads, hashed and checked in file order.

PartSink is the one sink: what the removed FileSink's tests (tests/test_sink_pipeline.py) covered
and still matters is here (the zstd check, a check fed the resumed bytes, signals while waiting)
or in tests/test_hashing.py (a stream appended in order, as ``landing.AppendingSink`` writes it);
the removed PartWriter's tests (tests/test_segments.py) became the sizing and keeping tests below.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest

from ed_extractor.services.file_transfer.regimes.zstd import zstd
from tests.backends import backend_module, gzip_verifier, zstd_verifier

KIB = 1024
MIB = 1024 * KIB
PIECE = 256 * KIB
BLOB = random.Random(0x5A1C).randbytes(8 * MIB + 7)
TEXT = b"[\n" + b",\n".join(b'{"id64": %d, "name": "Sys %d"}' % (n, n) for n in range(40_000))
TEXT += b"\n]\n"
TEXT_GZ = gzip.compress(TEXT, compresslevel=1, mtime=0)
TEXT_ZST = zstd.compress(TEXT, level=1)


def pieces_of(data: bytes, size: int = PIECE) -> list[tuple[int, bytes]]:
    """``data`` cut into ``(offset, bytes)`` pieces of ``size`` bytes (the last one shorter)."""
    return [(offset, data[offset : offset + size]) for offset in range(0, len(data), size)]


def write_from_threads(sink: Any, pieces: Sequence[tuple[int, bytes]], threads: int) -> None:
    """Write ``pieces`` in the given order from ``threads`` threads taking them in turn."""
    queue = iter(list(pieces))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                piece = next(queue, None)
            if piece is None:
                return
            try:
                sink.write(*piece)
            except BaseException as error:  # re-raised in the test's thread
                failures.append(error)
                return

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if failures:
        raise failures[0]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- Digests in file order ---------------------------------------------------------------------


def test_a_single_in_order_stream_is_hashed_without_reading_back(
    backend: ModuleType, scratch: Path
) -> None:
    sink = backend.PartSink(scratch, len(BLOB), blake3=True, window=512 * KIB)
    for offset, piece in pieces_of(BLOB, 128 * KIB):  # beyond the window: write waits for room
        assert sink.write(offset, piece) == len(piece)
    assert sink.finish() == sha256(BLOB)
    assert sink.blake3_hexdigest() == blake3.blake3(BLOB).hexdigest()
    assert (sink.hashed(), sink.read_back(), sink.resumed_bytes()) == (len(BLOB), 0, 0)
    assert scratch.read_bytes() == BLOB


def test_a_mutable_buffer_is_captured_when_written(backend: ModuleType, scratch: Path) -> None:
    buffer = bytearray(b"a" * 4096)
    sink = backend.PartSink(scratch, 8192)
    sink.write(4096, buffer)  # held: the frontier is still at 0
    buffer[:] = b"b" * 4096
    sink.write(0, memoryview(buffer))
    assert sink.finish() == sha256(b"b" * 4096 + b"a" * 4096)


def test_eight_threads_writing_shuffled_pieces_give_the_file_digests(
    backend: ModuleType, scratch: Path
) -> None:
    data = random.Random(8).randbytes(64 * MIB)
    pieces = pieces_of(data)
    random.Random(0).shuffle(pieces)
    sink = backend.PartSink(scratch, len(data), blake3=True)
    write_from_threads(sink, pieces, threads=8)
    assert sink.finish() == sha256(data)
    assert sink.blake3_hexdigest() == blake3.blake3(data).hexdigest()
    assert sink.hashed() == len(data)


def test_pieces_beyond_the_window_are_read_back(backend: ModuleType, scratch: Path) -> None:
    pieces = pieces_of(BLOB)
    sink = backend.PartSink(scratch, len(BLOB), blake3=True, window=1 * MIB)
    write_from_threads(sink, pieces[1:], threads=4)  # the first piece is late: the hash waits
    sink.write(*pieces[0])
    assert sink.finish() == sha256(BLOB)
    assert sink.blake3_hexdigest() == blake3.blake3(BLOB).hexdigest()
    held_at_most = 1 * MIB + PIECE  # the window, and the first piece (held at the frontier)
    assert sink.read_back() >= len(BLOB) - held_at_most


def test_a_piece_written_again_is_hashed_once(backend: ModuleType, scratch: Path) -> None:
    sink = backend.PartSink(scratch, len(BLOB))
    sink.write(0, BLOB[: 3 * MIB])
    sink.write(MIB, BLOB[MIB : 2 * MIB])  # a restarted connection fetches a range again
    sink.write(2 * MIB + 5, BLOB[2 * MIB + 5 : 5 * MIB])
    sink.write(5 * MIB, BLOB[5 * MIB :])
    assert sink.finish() == sha256(BLOB)


def test_ranges_fetched_again_are_hashed_once(backend: ModuleType, scratch: Path) -> None:
    rng = random.Random(5)
    spans = [(offset, offset + len(piece)) for offset, piece in pieces_of(BLOB)]
    for _ in range(24):  # restarted connections: ranges again, on other boundaries
        start = rng.randrange(len(BLOB))
        spans.append((start, min(len(BLOB), start + rng.randrange(1, 3 * PIECE))))
    rng.shuffle(spans)
    sink = backend.PartSink(scratch, len(BLOB), blake3=True, window=1 * MIB)
    write_from_threads(sink, [(start, BLOB[start:end]) for start, end in spans], threads=4)
    assert sink.finish() == sha256(BLOB)
    assert sink.blake3_hexdigest() == blake3.blake3(BLOB).hexdigest()


# --- Resume, unknown length, gaps --------------------------------------------------------------


def test_resumed_intervals_are_read_back_and_counted(backend: ModuleType, scratch: Path) -> None:
    on_disk = [(0, 3 * MIB), (5 * MIB, 6 * MIB)]
    scratch.write_bytes(bytes(BLOB[: 3 * MIB]) + bytes(2 * MIB) + BLOB[5 * MIB : 6 * MIB])
    with scratch.open("ab") as part:
        part.truncate(len(BLOB))
    sink = backend.PartSink(scratch, len(BLOB), keep=True, written=on_disk, blake3=True)
    sink.write(3 * MIB, BLOB[3 * MIB : 5 * MIB])
    sink.write(6 * MIB, BLOB[6 * MIB :])
    assert sink.finish() == sha256(BLOB)
    assert sink.blake3_hexdigest() == blake3.blake3(BLOB).hexdigest()
    assert (sink.resumed_bytes(), sink.read_back()) == (4 * MIB, 0)


def test_a_new_part_is_sized_at_once_and_a_kept_one_left_as_it_is(
    backend: ModuleType, scratch: Path
) -> None:
    scratch.write_bytes(b"old content")
    backend.PartSink(scratch, 10).abort()
    assert scratch.read_bytes() == bytes(10)  # emptied, then sized
    scratch.write_bytes(b"0123456789")
    backend.PartSink(scratch, 10, keep=True).abort()
    assert scratch.read_bytes() == b"0123456789"


def test_a_kept_file_of_another_size_is_refused(backend: ModuleType, scratch: Path) -> None:
    scratch.write_bytes(b"x" * 10)
    with pytest.raises(ValueError, match="holds 10 bytes, not 11"):
        backend.PartSink(scratch, 11, keep=True)


def test_a_kept_file_that_is_gone_is_file_not_found(backend: ModuleType, scratch: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        backend.PartSink(scratch, 11, keep=True)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOENT, str(scratch))


def test_an_unknown_length_grows_as_written(backend: ModuleType, scratch: Path) -> None:
    sink = backend.PartSink(scratch, None)
    for offset, piece in pieces_of(BLOB, 100_000):
        sink.write(offset, piece)
    assert sink.finish() == sha256(BLOB)
    assert scratch.stat().st_size == len(BLOB)


@pytest.mark.parametrize("size", [0, None], ids=["size=0", "size=None"])
def test_an_empty_file_has_the_digest_of_no_bytes(
    backend: ModuleType, scratch: Path, size: int | None
) -> None:
    sink = backend.PartSink(scratch, size, blake3=True)
    assert sink.finish() == sha256(b"")
    assert sink.blake3_hexdigest() == blake3.blake3(b"").hexdigest()
    assert scratch.stat().st_size == 0


@pytest.mark.parametrize("size", [4 * MIB, None], ids=["known", "unknown"])
def test_a_gap_at_finish_names_the_offset(
    backend: ModuleType, scratch: Path, size: int | None
) -> None:
    sink = backend.PartSink(scratch, size)
    sink.write(0, BLOB[:MIB])
    sink.write(2 * MIB, BLOB[2 * MIB : 3 * MIB])
    with pytest.raises(ValueError, match=f"no bytes written at offset {MIB}$"):
        sink.finish()
    sink.abort()


def test_a_write_beyond_the_size_is_refused(backend: ModuleType, scratch: Path) -> None:
    sink = backend.PartSink(scratch, 100)
    with pytest.raises(ValueError, match="outside the part file's 100 bytes"):
        sink.write(90, b"x" * 11)
    with pytest.raises(ValueError, match="outside the part file's 100 bytes"):
        sink.write(-1, b"x")
    sink.abort()


# --- Content check, failures, abort ------------------------------------------------------------


@pytest.mark.parametrize(("compression", "body"), [("gzip", TEXT_GZ), ("zstd", TEXT_ZST)])
def test_the_verifier_is_fed_the_file_in_order(
    name: str, backend: ModuleType, scratch: Path, compression: str, body: bytes
) -> None:
    verifier = (gzip_verifier if compression == "gzip" else zstd_verifier)(name)()
    pieces = pieces_of(body, 64 * KIB)
    random.Random(1).shuffle(pieces)
    sink = backend.PartSink(scratch, len(body), verifier=verifier, window=256 * KIB)
    write_from_threads(sink, pieces, threads=4)
    assert sink.finish() == sha256(body)
    assert verifier.finish() == (len(TEXT), 40_000)


def test_the_verifier_is_fed_the_resumed_bytes(
    name: str, backend: ModuleType, scratch: Path
) -> None:
    cut = len(TEXT_GZ) // 3
    scratch.write_bytes(TEXT_GZ[:cut] + bytes(len(TEXT_GZ) - cut))
    verifier = gzip_verifier(name)()
    sink = backend.PartSink(scratch, len(TEXT_GZ), keep=True, written=[(0, cut)], verifier=verifier)
    sink.write(cut, TEXT_GZ[cut:])
    assert sink.finish() == sha256(TEXT_GZ)
    assert verifier.finish() == (len(TEXT), 40_000)
    assert sink.resumed_bytes() == cut


def test_a_corrupt_stream_is_a_value_error_from_write_or_finish(
    name: str, backend: ModuleType, scratch: Path
) -> None:
    middle = len(TEXT_GZ) // 2
    zeroed = TEXT_GZ[:middle] + bytes(64) + TEXT_GZ[middle + 64 :]
    sink = backend.PartSink(scratch, len(zeroed), verifier=gzip_verifier(name)())
    with pytest.raises(ValueError, match="corrupt gzip stream"):  # noqa: PT012 - any call may raise
        write_from_threads(sink, pieces_of(zeroed, 16 * KIB), threads=1)
        sink.finish()
    sink.abort()


def test_a_corrupt_stream_stops_the_writes_while_the_download_runs(
    name: str, backend: ModuleType, scratch: Path
) -> None:
    first_member = bytearray(gzip.compress(BLOB[:MIB], compresslevel=1, mtime=0))
    first_member[-8] ^= 0xFF  # its CRC-32: checked as soon as the member ends, at about 1 MiB
    stream = bytes(first_member) + gzip.compress(BLOB, compresslevel=1, mtime=0)
    pieces = pieces_of(stream, 64 * KIB)
    sink = backend.PartSink(scratch, len(stream), verifier=gzip_verifier(name)())
    first_after = -(-len(first_member) // (64 * KIB))  # the first piece after the bad member
    for piece in pieces[:first_after]:  # none of these can fail: the bad CRC-32 comes last
        sink.write(*piece)
    deadline = time.monotonic() + 10
    while sink.hashed() < len(first_member) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ValueError, match="corrupt gzip stream"):  # noqa: PT012 - a later write
        for piece in pieces[first_after:]:  # some 7 MiB more, 10 ms apart: ample time
            sink.write(*piece)
            time.sleep(0.01)
    sink.abort()


def test_a_full_disk_is_an_os_error_with_the_filename_raised_again(backend: ModuleType) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full does not exist")
    sink = backend.PartSink("/dev/full", None, keep=True)
    for _ in range(2):  # the first failure, then the same again
        with pytest.raises(OSError, match="No space left") as caught:
            sink.write(0, b"x" * 4096)
        assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, "/dev/full")
    with pytest.raises(OSError, match="No space left"):
        sink.finish()
    sink.abort()


def test_abort_keeps_the_bytes_and_later_calls_are_refused(
    backend: ModuleType, scratch: Path
) -> None:
    sink = backend.PartSink(scratch, len(BLOB))
    sink.write(MIB, BLOB[MIB : 2 * MIB])
    sink.sync_data()
    sink.abort()
    sink.abort()  # idempotent
    assert scratch.read_bytes()[MIB : 2 * MIB] == BLOB[MIB : 2 * MIB]
    with pytest.raises(ValueError, match="finished or aborted PartSink"):
        sink.write(0, b"x")
    with pytest.raises(ValueError, match="finished or aborted PartSink"):
        sink.finish()
    with pytest.raises(ValueError, match="finished or aborted PartSink"):
        sink.sync_data()


def test_abort_frees_a_writer_waiting_for_room(backend: ModuleType, scratch: Path) -> None:
    sink = backend.PartSink(scratch, None, blake3=True, window=256 * KIB)
    stopped: list[BaseException] = []

    def stream() -> None:
        try:
            for offset in range(0, 1 << 40, 64 * KIB):  # until the sink is aborted
                sink.write(offset, BLOB[: 64 * KIB])
        except ValueError as closed:
            stopped.append(closed)

    writer = threading.Thread(target=stream)
    writer.start()
    while sink.hashed() < 4 * MIB:
        writer.join(0.01)
    sink.abort()
    writer.join(10)
    assert not writer.is_alive()
    assert "finished or aborted PartSink" in str(stopped[0])


class Interrupted(Exception):
    """What the test's SIGINT handler raises in the thread that waits."""


def test_a_write_waiting_for_room_is_interrupted_by_a_signal(
    backend: ModuleType, scratch: Path
) -> None:
    # A check that blocks stalls the hashing: the window fills and write() waits, looking at
    # signals while it does (Ctrl-C stops a download whose disk or check is stuck).
    release = threading.Event()

    class StuckCheck:
        def feed(self, data: bytes) -> None:
            release.wait(30)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGINT, interrupt)
    sink = backend.PartSink(scratch, None, verifier=StuckCheck(), window=256 * KIB)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    written = 0

    def write_until_interrupted() -> None:
        nonlocal written
        for offset in range(0, 1 << 30, 64 * KIB):  # far beyond what the stages may hold
            written += sink.write(offset, BLOB[: 64 * KIB])

    try:
        with pytest.raises(Interrupted):
            write_until_interrupted()
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
        release.set()
        sink.abort()
    assert 0 < written < 64 * MIB


def test_abort_gives_the_shared_window_back(backend: ModuleType, tmp_path: Path) -> None:
    """One process-wide window: a sink holding all of it leaves none for the next until aborted."""
    hoarder = backend.PartSink(tmp_path / "hoarder.part", 40 * MIB)
    for offset in range(PIECE, 40 * MIB, PIECE):  # its first piece never comes: all is held
        hoarder.write(offset, bytes(PIECE))

    def read_back_of_a_late_first_piece(path: Path) -> int:
        sink = backend.PartSink(path, 2 * MIB)
        sink.write(MIB, BLOB[MIB : 2 * MIB])
        sink.write(0, BLOB[:MIB])
        assert sink.finish() == sha256(BLOB[: 2 * MIB])
        return int(sink.read_back())

    try:
        # Its second MiB finds no room; the first goes on at once, so it is held regardless.
        assert read_back_of_a_late_first_piece(tmp_path / "starved.part") == MIB
    finally:
        hoarder.abort()
    assert read_back_of_a_late_first_piece(tmp_path / "after.part") == 0


# --- Memory ------------------------------------------------------------------------------------

PEAK_RSS_SCRIPT = """
import random, re, sys, threading, time
from pathlib import Path
from ed_extractor import _fallback

def peak_rss_kib():  # VmHWM: unlike ru_maxrss, not inherited across exec from the parent's peak
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])

if sys.argv[1] == "native":
    from ed_extractor import _native as backend
else:
    backend = _fallback
TOTAL, PIECE, THREADS, RATE = int(sys.argv[3]), 256 << 10, 8, int(sys.argv[4])
block = random.Random(3).randbytes(4 << 20)
sink = backend.PartSink(sys.argv[2], TOTAL, blake3=True)
before = peak_rss_kib()

def stripe(first):  # thread i writes pieces i, i + 8, ...: interleaved, each at most RATE B/s
    began = time.monotonic()
    for sent, offset in enumerate(range(first * PIECE, TOTAL, THREADS * PIECE), start=1):
        start = offset % len(block)
        sink.write(offset, block[start:start + PIECE])
        time.sleep(max(0.0, began + sent * PIECE / RATE - time.monotonic()))

threads = [threading.Thread(target=stripe, args=(i,)) for i in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sink.finish(fsync=False)
after = peak_rss_kib()
print((after - before) // 1024, sink.read_back())
"""


def test_peak_memory_stays_bounded_with_eight_threads(name: str, scratch: Path) -> None:
    backend_module(name)  # skips native when it is not built
    if not os.path.exists("/proc/self/status"):
        pytest.skip("no /proc/self/status (VmHWM) to read the peak RSS from")
    total, per_connection = 512 * MIB, 64 * MIB  # 8 connections: about the hashing's pace
    arguments = [name, str(scratch), str(total), str(per_connection)]
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    growth_mib, read_back = map(int, run.stdout.split())
    assert growth_mib < 150, f"peak RSS grew by {growth_mib} MiB (read back {read_back} bytes)"
    assert scratch.stat().st_size == total
