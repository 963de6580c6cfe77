"""FileSink beyond SHA-256: BLAKE3, a verifier fed in order, failures raised later, abort."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import random
import threading
from pathlib import Path
from types import ModuleType

import blake3
import pytest

from ed_extractor.services.file_transfer.regimes.compressed import StreamVerifier
from ed_extractor.services.file_transfer.regimes.zstd import zstd
from tests.backends import backend_module, gzip_verifier, zstd_verifier
from tests.test_hashing import chunks

KIB = 1024
MIB = 1024 * KIB
BLOB = random.Random(0xF11E).randbytes(9 * MIB + 5)
TEXT = b"[\n" + b",\n".join(b'{"id64": %d, "name": "Sys %d"}' % (n, n) for n in range(40_000))
TEXT += b"\n]\n"
TEXT_GZ = gzip.compress(TEXT, compresslevel=1, mtime=0)
TEXT_ZST = zstd.compress(TEXT, level=1)
CLOSED = "I/O operation on a finished or aborted FileSink"


def verifier_for(name: str, compression: str = "gzip") -> StreamVerifier:
    return (gzip_verifier if compression == "gzip" else zstd_verifier)(name)()


# --- Digests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * KIB, 5 * MIB + 1, 9 * MIB + 5], ids=str)
@pytest.mark.parametrize("chunk_size", [1000, 64 * KIB, 3 * MIB], ids=str)
def test_sha256_and_blake3_equal_hashlib_and_the_blake3_package(
    backend: ModuleType, scratch: Path, size: int, chunk_size: int
) -> None:
    data = BLOB[:size]
    sink = backend.FileSink(scratch, blake3=True)
    for piece in chunks(data, chunk_size):
        sink.write(bytes(piece))
    assert sink.blake3_hexdigest() is None  # not before finish
    assert sink.finish(fsync=False) == hashlib.sha256(data).hexdigest()
    assert sink.blake3_hexdigest() == blake3.blake3(data).hexdigest()
    assert scratch.read_bytes() == data


def test_no_blake3_unless_asked(backend: ModuleType, scratch: Path) -> None:
    sink = backend.FileSink(scratch)
    sink.write(b"abc")
    sink.finish(fsync=False)
    assert sink.blake3_hexdigest() is None


@pytest.mark.parametrize("prefix", [1, 1 * MIB, 4 * MIB + 3], ids=str)
def test_resume_hashes_the_prefix_with_both(
    backend: ModuleType, scratch: Path, prefix: int
) -> None:
    scratch.write_bytes(BLOB[:prefix] + b"junk after the prefix")
    sink = backend.FileSink(scratch, resume_from=prefix, blake3=True)
    assert sink.tell() == prefix
    for piece in chunks(BLOB[prefix : 6 * MIB], 64 * KIB):
        sink.write(bytes(piece))
    assert sink.tell() == 6 * MIB
    assert sink.finish(fsync=False) == hashlib.sha256(BLOB[: 6 * MIB]).hexdigest()
    assert sink.blake3_hexdigest() == blake3.blake3(BLOB[: 6 * MIB]).hexdigest()
    assert scratch.read_bytes() == BLOB[: 6 * MIB]


def test_a_mutable_buffer_is_captured_when_written(backend: ModuleType, scratch: Path) -> None:
    # The native sink keeps bytes objects without a copy but copies anything mutable, since
    # the caller may change it once write() has returned.
    buffer = bytearray(BLOB[: 2 * MIB])
    sink = backend.FileSink(scratch, blake3=True)
    sink.write(buffer)
    buffer[:] = bytes(len(buffer))
    assert sink.finish(fsync=False) == hashlib.sha256(BLOB[: 2 * MIB]).hexdigest()
    assert scratch.read_bytes() == BLOB[: 2 * MIB]


# --- The content verifier ----------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [517, 64 * KIB], ids=str)
@pytest.mark.parametrize(("compression", "body"), [("gzip", TEXT_GZ), ("zstd", TEXT_ZST)])
def test_verifier_is_fed_every_chunk_in_order(
    name: str, backend: ModuleType, scratch: Path, chunk_size: int, compression: str, body: bytes
) -> None:
    verifier = verifier_for(name, compression)
    sink = backend.FileSink(scratch, verifier=verifier)
    for piece in chunks(body, chunk_size):
        sink.write(bytes(piece))
    assert sink.finish(fsync=False) == hashlib.sha256(body).hexdigest()
    assert verifier.finish() == (len(TEXT), 40_000)


def test_verifier_is_fed_the_resumed_prefix(name: str, backend: ModuleType, scratch: Path) -> None:
    cut = len(TEXT_GZ) // 3
    scratch.write_bytes(TEXT_GZ[:cut])
    verifier = verifier_for(name)
    sink = backend.FileSink(scratch, resume_from=cut, verifier=verifier)
    sink.write(TEXT_GZ[cut:])
    sink.finish(fsync=False)
    assert verifier.finish() == (len(TEXT), 40_000)


def test_a_corrupt_stream_is_a_value_error_from_write_or_finish(
    name: str, backend: ModuleType, scratch: Path
) -> None:
    corrupt = bytearray(TEXT_GZ)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 64] = bytes(64)
    sink = backend.FileSink(scratch, verifier=verifier_for(name))
    with pytest.raises(ValueError, match="corrupt gzip stream"):  # noqa: PT012 - either may report it
        for piece in chunks(bytes(corrupt), 4 * KIB):
            sink.write(bytes(piece))
        sink.finish(fsync=False)
    sink.abort()


def test_native_refuses_a_python_verifier(scratch: Path) -> None:
    native = backend_module("native")
    with pytest.raises(TypeError, match="native GzipVerifier or ZstdVerifier"):
        native.FileSink(scratch, verifier=verifier_for("python"))
    assert not scratch.exists()


# --- Failures and abort ------------------------------------------------------------------------


def test_a_write_error_is_raised_again_by_every_later_call() -> None:
    # Native: the writer thread's error reaches the next write() and again finish().
    native = backend_module("native")
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full does not exist")
    sink = native.FileSink("/dev/full", blake3=True)
    raised: list[OSError] = []
    for _ in range(64):  # 64 MiB: far more than is ever in flight
        try:
            sink.write(BLOB[: 1 * MIB])
        except OSError as error:
            raised.append(error)
            break
    with pytest.raises(OSError, match="No space left") as at_finish:
        sink.finish(fsync=False)
    for caught in [*raised, at_finish.value]:
        assert (caught.errno, caught.filename) == (errno.ENOSPC, "/dev/full")
    assert raised, "the error reached write() before 64 MiB were accepted"
    with pytest.raises(ValueError, match=CLOSED):
        sink.write(b"x")
    sink.abort()


def test_a_write_error_on_an_unwritable_descriptor(scratch: Path) -> None:
    # A FIFO whose reader has gone: every write fails with EPIPE, on a pipeline thread.
    native = backend_module("native")
    fifo = scratch.with_suffix(".fifo")
    os.mkfifo(fifo)
    try:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        sink = native.FileSink(fifo)
        os.close(reader)
        sink.write(BLOB[: 256 * KIB])
        with pytest.raises(BrokenPipeError) as caught:
            sink.finish(fsync=False)
        assert (caught.value.errno, caught.value.filename) == (errno.EPIPE, str(fifo))
    finally:
        fifo.unlink()


def test_abort_writes_everything_accepted(backend: ModuleType, scratch: Path) -> None:
    sink = backend.FileSink(scratch, blake3=True)
    for piece in chunks(BLOB, 64 * KIB):
        sink.write(bytes(piece))
    accepted = sink.tell()
    sink.abort()
    sink.abort()
    assert scratch.read_bytes() == BLOB[:accepted]
    assert sink.blake3_hexdigest() is None
    with pytest.raises(ValueError, match=CLOSED):
        sink.finish()


def test_a_dropped_sink_still_writes_what_it_accepted(scratch: Path) -> None:
    native = backend_module("native")
    sink = native.FileSink(scratch)
    for piece in chunks(BLOB, 64 * KIB):
        sink.write(bytes(piece))
    del sink
    # The writer thread finishes what was queued on its own and closes the file.
    for _ in range(500):
        if scratch.stat().st_size == len(BLOB):
            break
        threading.Event().wait(0.01)
    assert scratch.read_bytes() == BLOB


def test_write_waits_when_a_few_mib_are_in_flight(scratch: Path) -> None:
    # A FIFO nobody reads yet: the writer thread blocks once the pipe is full, so write()
    # stops accepting when the pipeline's bound is reached, and goes on once the reader drains.
    native = backend_module("native")
    fifo = scratch.with_suffix(".fifo")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = native.FileSink(fifo)
        accepted = 0
        done = threading.Event()

        def write_all() -> None:
            nonlocal accepted
            for piece in chunks(BLOB[: 8 * MIB], 64 * KIB):
                accepted += sink.write(bytes(piece))
            done.set()

        writer = threading.Thread(target=write_all, daemon=True)
        writer.start()
        assert not done.wait(1.0)
        pipe_and_buffers = 1 * MIB + 128 * KIB  # the pipe (64 KiB to 1 MiB) and write buffer
        assert 4 * MIB - 64 * KIB <= accepted <= 4 * MIB + pipe_and_buffers
        received = bytearray()

        def read_to_the_end() -> None:
            os.set_blocking(reader, True)
            while block := os.read(reader, 1 * MIB):
                received.extend(block)

        draining = threading.Thread(target=read_to_the_end, daemon=True)
        draining.start()
        writer.join()
        assert sink.finish(fsync=False) == hashlib.sha256(BLOB[: 8 * MIB]).hexdigest()
        draining.join()
        assert bytes(received) == BLOB[: 8 * MIB]
    finally:
        os.close(reader)
        fifo.unlink()
