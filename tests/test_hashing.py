"""SHA-256 and PartSink backends: the native extension and the hashlib fallback behave alike.

The removed FileSink's tests are now PartSink's, written the way ``landing.AppendingSink`` writes
(in order from offset 0, no set size); its resume_from tests went with it, PartSink resumes from
``written`` intervals (tests/test_part_sink.py).
"""

from __future__ import annotations

import array
import errno
import hashlib
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ed_extractor import _fallback
from tests.backends import backend_module
from tests.scratch import scratch_folder

KIB = 1024
MIB = 1024 * KIB
SIZES = [0, 1, 55, 56, 63, 64, 65, 128 * KIB - 1, 128 * KIB, 128 * KIB + 1, 5 * MIB + 3]
BLOB = random.Random(0x5EED).randbytes(max(SIZES))
CLOSED = "I/O operation on a finished or aborted PartSink"


def native_module() -> ModuleType:
    """The native extension, or skip the calling test saying why it does not import."""
    return backend_module("native")


@pytest.fixture(params=["native", "python"])
def backend(request: pytest.FixtureRequest) -> ModuleType:
    """Each test taking ``backend`` runs once per implementation of the same API."""
    return native_module() if request.param == "native" else _fallback


def sha256_hex(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield view[start : start + size]


# --- Sha256 ------------------------------------------------------------------------------------


class TestSha256:
    def test_constants_match_hashlib(self, backend: ModuleType) -> None:
        reference = hashlib.sha256()
        for hasher in (backend.Sha256, backend.Sha256()):
            assert hasher.name == reference.name == "sha256"
            assert hasher.digest_size == reference.digest_size == 32
            assert hasher.block_size == reference.block_size == 64

    @pytest.mark.parametrize("size", SIZES)
    def test_one_shot_equals_hashlib(self, backend: ModuleType, size: int) -> None:
        data = BLOB[:size]
        assert backend.Sha256(data).digest() == hashlib.sha256(data).digest()
        hasher = backend.Sha256()
        hasher.update(data)
        assert hasher.hexdigest() == sha256_hex(data)

    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize("chunk_size", [1000, 64 * KIB + 1])
    def test_chunked_equals_hashlib(self, backend: ModuleType, size: int, chunk_size: int) -> None:
        data = BLOB[:size]
        hasher = backend.Sha256()
        for chunk in chunks(data, chunk_size):
            hasher.update(chunk)
        assert hasher.hexdigest() == sha256_hex(data)

    @given(sizes=st.lists(st.integers(min_value=0, max_value=70_000), max_size=12))
    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    def test_any_chunking_gives_the_one_shot_digest(
        self, backend: ModuleType, sizes: list[int]
    ) -> None:
        hasher = backend.Sha256()
        offset = 0
        for size in sizes:
            hasher.update(BLOB[offset : offset + size])
            offset += size
        assert hasher.hexdigest() == sha256_hex(BLOB[:offset])

    def test_digest_does_not_end_the_hash(self, backend: ModuleType) -> None:
        hasher = backend.Sha256(b"abc")
        assert hasher.digest() == hasher.digest() == hashlib.sha256(b"abc").digest()
        hasher.update(b"def")
        assert hasher.hexdigest() == sha256_hex(b"abcdef")

    def test_copy_is_independent(self, backend: ModuleType) -> None:
        original = backend.Sha256(b"abc")
        clone = original.copy()
        assert type(clone) is type(original)
        clone.update(b"def")
        original.update(b"xyz")
        assert clone.hexdigest() == sha256_hex(b"abcdef")
        assert original.hexdigest() == sha256_hex(b"abcxyz")

    def test_shared_between_threads(self, backend: ModuleType) -> None:
        chunk = BLOB[: 64 * KIB]
        hasher = backend.Sha256()

        def feed() -> None:
            for _ in range(40):
                hasher.update(chunk)

        threads = [threading.Thread(target=feed) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert hasher.hexdigest() == sha256_hex(chunk * 160)


# --- Buffers -----------------------------------------------------------------------------------

DATA = BLOB[: 4 * KIB + 16]  # a multiple of 8 and 16, so every cast below is possible


def _buffer_kinds() -> dict[str, Callable[[], Any]]:
    return {
        "bytes": lambda: DATA,
        "bytearray": lambda: bytearray(DATA),
        "memoryview": lambda: memoryview(DATA),
        "memoryview-slice": lambda: memoryview(DATA)[3:-5],
        "memoryview-of-bytearray-slice": lambda: memoryview(bytearray(DATA))[100:],
        "cast-I": lambda: memoryview(DATA).cast("I"),
        "cast-Q": lambda: memoryview(DATA).cast("Q"),
        "cast-2d": lambda: memoryview(DATA).cast("B", shape=[16, len(DATA) // 16]),
        "cast-2d-d": lambda: memoryview(DATA).cast("d", shape=[2, len(DATA) // 16]),
        "array-H": lambda: array.array("H", DATA),
        "array-d": lambda: array.array("d", DATA),
        "empty-slice": lambda: memoryview(DATA)[7:7],
    }


BUFFER_KINDS = _buffer_kinds()


class TestBuffers:
    @pytest.mark.parametrize("kind", BUFFER_KINDS)
    def test_any_contiguous_buffer_hashes_its_raw_bytes(
        self, backend: ModuleType, kind: str
    ) -> None:
        buffer = BUFFER_KINDS[kind]()
        expected = sha256_hex(memoryview(buffer).tobytes())
        assert backend.Sha256(buffer).hexdigest() == expected
        hasher = backend.Sha256()
        hasher.update(buffer)
        assert hasher.hexdigest() == expected

    @pytest.mark.parametrize("kind", BUFFER_KINDS)
    def test_sink_writes_the_raw_bytes(
        self, backend: ModuleType, tmp_path: Path, kind: str
    ) -> None:
        buffer = BUFFER_KINDS[kind]()
        raw = memoryview(buffer).tobytes()
        sink = backend.PartSink(tmp_path / "out", None)
        assert sink.write(0, buffer) == len(raw)
        assert sink.finish() == sha256_hex(raw)
        assert (tmp_path / "out").read_bytes() == raw

    @pytest.mark.parametrize(
        "make",
        [
            lambda: memoryview(DATA)[::2],
            lambda: memoryview(bytearray(DATA))[1::3],
            lambda: memoryview(array.array("I", DATA))[::2],
        ],
        ids=["bytes-step-2", "bytearray-step-3", "array-I-step-2"],
    )
    def test_non_contiguous_buffer_is_a_buffer_error(
        self, backend: ModuleType, tmp_path: Path, make: Callable[[], memoryview]
    ) -> None:
        with pytest.raises(BufferError, match="not C-contiguous"):
            backend.Sha256(make())
        with pytest.raises(BufferError, match="not C-contiguous"):
            backend.Sha256().update(make())
        sink = backend.PartSink(tmp_path / "out", None)
        with pytest.raises(BufferError, match="not C-contiguous"):
            sink.write(0, make())
        assert sink.finish() == sha256_hex(b"")  # nothing was written

    @pytest.mark.parametrize("not_a_buffer", ["text", 12, [1, 2]], ids=["str", "int", "list"])
    def test_non_buffer_is_a_type_error(self, backend: ModuleType, not_a_buffer: object) -> None:
        with pytest.raises(TypeError):
            backend.Sha256(not_a_buffer)
        with pytest.raises(TypeError):
            backend.Sha256().update(not_a_buffer)


# --- PartSink, appended in order ----------------------------------------------------------------


def append(sink: Any, pieces: Iterable[bytes | memoryview]) -> int:
    """Write ``pieces`` one after the other from offset 0, as ``landing.AppendingSink`` does."""
    end = 0
    for piece in pieces:
        assert sink.write(end, piece) == memoryview(piece).nbytes
        end += memoryview(piece).nbytes
    return end


class TestAppendedPartSink:
    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize(
        "chunk_size", [None, 1000, 128 * KIB], ids=["one-shot", "1000", "128K"]
    )
    def test_content_and_digests_equal_hashlib_and_blake3(
        self, backend: ModuleType, tmp_path: Path, size: int, chunk_size: int | None
    ) -> None:
        data = BLOB[:size]
        path = tmp_path / "out.part"
        sink = backend.PartSink(path, None, blake3=True)
        append(sink, [memoryview(data)] if chunk_size is None else chunks(data, chunk_size))
        assert sink.blake3_hexdigest() is None  # not before finish
        assert sink.finish() == sha256_hex(data)
        assert sink.blake3_hexdigest() == blake3.blake3(data).hexdigest()
        assert path.read_bytes() == data

    @given(sizes=st.lists(st.integers(min_value=0, max_value=150_000), max_size=8))
    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    def test_any_chunking_writes_the_same_file(self, backend: ModuleType, sizes: list[int]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "out"
            sink = backend.PartSink(str(path), None)
            offsets = list(itertools.accumulate(sizes, initial=0))
            total = append(sink, [BLOB[a:b] for a, b in itertools.pairwise(offsets)])
            assert sink.finish(fsync=False) == sha256_hex(BLOB[:total])
            assert path.read_bytes() == BLOB[:total]

    def test_truncates_an_existing_file(self, backend: ModuleType, tmp_path: Path) -> None:
        path = tmp_path / "out"
        path.write_bytes(b"old content that must go")
        sink = backend.PartSink(path, None)
        append(sink, [b"new"])
        assert sink.finish() == sha256_hex(b"new")
        assert path.read_bytes() == b"new"

    def test_finish_without_fsync_and_no_blake3_unless_asked(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        sink = backend.PartSink(tmp_path / "out", None)
        append(sink, [b"abc"])
        assert sink.finish(fsync=False) == sha256_hex(b"abc")
        assert sink.blake3_hexdigest() is None
        assert (tmp_path / "out").read_bytes() == b"abc"


class TestPartSinkLifecycle:
    def test_write_after_finish(self, backend: ModuleType, tmp_path: Path) -> None:
        sink = backend.PartSink(tmp_path / "out", None)
        sink.finish()
        with pytest.raises(ValueError, match=CLOSED):
            sink.write(0, b"x")
        assert (tmp_path / "out").read_bytes() == b""

    def test_finish_twice(self, backend: ModuleType, tmp_path: Path) -> None:
        sink = backend.PartSink(tmp_path / "out", None)
        sink.write(0, b"x")
        sink.finish()
        with pytest.raises(ValueError, match=CLOSED):
            sink.finish()

    def test_closed_check_comes_before_the_buffer_check(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        sink = backend.PartSink(tmp_path / "out", None)
        sink.finish()
        with pytest.raises(ValueError, match=CLOSED):
            sink.write(0, "not a buffer")

    def test_abort_after_finish_does_nothing(self, backend: ModuleType, tmp_path: Path) -> None:
        sink = backend.PartSink(tmp_path / "out", None)
        sink.write(0, b"abc")
        sink.finish()
        sink.abort()
        assert (tmp_path / "out").read_bytes() == b"abc"


# --- I/O errors --------------------------------------------------------------------------------


# How PartSink(path, size) opens a new part file (read, write, create, truncate): the probe below
# opens the same way, since a read-only mount answers O_TRUNC with EROFS before checking access.
SINK_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC


def _unwritable_for_everyone() -> str | None:
    """A path that even root cannot open for writing (read-only sysctl/sysfs), if there is one."""
    for candidate in ("/proc/sys/kernel/osrelease", "/sys/kernel/notes"):
        try:
            fd = os.open(candidate, SINK_CREATE_FLAGS)
        except PermissionError:
            return candidate
        except OSError:
            continue
        os.close(fd)
    return None


class TestPartSinkOpenErrors:
    def test_directory_is_is_a_directory_error(self, backend: ModuleType, tmp_path: Path) -> None:
        for keep in (False, True):
            with pytest.raises(IsADirectoryError) as caught:
                backend.PartSink(tmp_path, None, keep=keep)
            assert caught.value.errno == errno.EISDIR
            assert caught.value.filename == str(tmp_path)

    def test_parent_is_a_file_is_not_a_directory_error(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        (tmp_path / "file").write_bytes(b"")
        path = str(tmp_path / "file" / "out.part")
        with pytest.raises(NotADirectoryError) as caught:
            backend.PartSink(path, None)
        assert caught.value.errno == errno.ENOTDIR
        assert caught.value.filename == path

    def test_missing_parent_is_file_not_found_with_the_path_as_given(
        self, backend: ModuleType, tmp_path: Path
    ) -> None:
        path = f"{tmp_path}//missing/./out.part"
        with pytest.raises(FileNotFoundError) as caught:
            backend.PartSink(path, None)
        assert caught.value.errno == errno.ENOENT
        assert caught.value.filename == path

    def test_unwritable_file_is_permission_error(self, backend: ModuleType) -> None:
        path = _unwritable_for_everyone()
        if path is None:
            pytest.skip("no path here that refuses writes even to root")
        with pytest.raises(PermissionError) as caught:
            backend.PartSink(path, None)
        assert caught.value.errno == errno.EACCES
        assert caught.value.filename == path


# --- The GIL -----------------------------------------------------------------------------------


def progress_during(call: Callable[[], object]) -> int:
    """How often another Python thread ran while ``call`` was running.

    The helper thread sleeps between increments, so it hands the GIL back at once, and the switch
    interval is raised so the interpreter never forces a switch away from this thread: the counter
    can only move while ``call`` itself has released the GIL.
    """
    counter = 0
    stop = threading.Event()
    started = threading.Event()

    def count() -> None:
        nonlocal counter
        started.set()
        while not stop.is_set():
            counter += 1
            stop.wait(0.0001)

    thread = threading.Thread(target=count, daemon=True)
    old_interval = sys.getswitchinterval()
    thread.start()
    started.wait()
    sys.setswitchinterval(100.0)
    try:
        before = counter
        call()
        after = counter
    finally:
        sys.setswitchinterval(old_interval)
        stop.set()
        thread.join()
    return after - before


class TestGilRelease:
    BIG = 256 * MIB

    def test_harness_sees_a_call_that_holds_the_gil(self) -> None:
        assert progress_during(lambda: sum(range(5_000_000))) == 0

    def test_native_hashing_releases_the_gil(self) -> None:
        native = native_module()
        data = bytes(self.BIG)
        hasher = native.Sha256()
        assert progress_during(lambda: hasher.update(data)) > 10
        assert hasher.hexdigest() == sha256_hex(data)

    def test_native_sink_works_without_the_gil(self, tmp_path: Path) -> None:
        # write() writes and waits for room in the window with the GIL released; finish() waits
        # for the hashing threads the same way.
        native = native_module()
        directory = scratch_folder(tmp_path, self.BIG)
        data = bytes(self.BIG)
        pieces = [data[start : start + MIB] for start in range(0, self.BIG, MIB)]
        with tempfile.NamedTemporaryFile(dir=directory) as target:
            sink = native.PartSink(target.name, None, blake3=True)
            digests: list[str] = []

            def write_all_and_finish() -> None:
                append(sink, pieces)
                digests.append(sink.finish(fsync=False))

            assert progress_during(write_all_and_finish) > 10
            assert digests == [sha256_hex(data)]


# --- Backend choice ----------------------------------------------------------------------------


def _backend_in_subprocess(native_env: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ED_EXTRACTOR_NATIVE"}
    if native_env is not None:
        env["ED_EXTRACTOR_NATIVE"] = native_env
    result = subprocess.run(
        [sys.executable, "-c", "from ed_extractor import hashing; print(hashing.BACKEND)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("value", ["0", "false", "no"])
def test_env_var_forces_the_python_backend(value: str) -> None:
    assert _backend_in_subprocess(value) == "python"


def test_native_backend_is_the_default_when_it_imports() -> None:
    native_module()
    assert _backend_in_subprocess(None) == "native"
    assert _backend_in_subprocess("1") == "native"


def test_backend_classes_match_the_backend_name() -> None:
    from ed_extractor import hashing

    expected = _fallback if hashing.BACKEND == "python" else native_module()
    assert hashing.Sha256 is expected.Sha256
    assert hashing.PartSink is expected.PartSink


def test_native_names_its_hash_implementation() -> None:
    native = native_module()
    assert native.HASH_IMPLEMENTATION.startswith("sha2 ")
    assert isinstance(native.__version__, str)


# --- Test scaffolding that must hold on any machine ------------------------------------------


def test_scratch_folder_falls_back_when_tmpfs_is_small(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    assert scratch_folder(tmp_path / "x", free + 1, tmpfs=tmp_path) == tmp_path / "x"
    assert scratch_folder(tmp_path / "x", 1, tmpfs=tmp_path) == tmp_path
    assert scratch_folder(tmp_path, 1, tmpfs=tmp_path / "missing") == tmp_path


def test_the_unwritable_probe_opens_as_the_sink_does(tmp_path: Path) -> None:
    # The sink truncates an existing file and creates a missing one: the probe's flags must too.
    existing = tmp_path / "existing"
    existing.write_bytes(b"old")
    os.close(os.open(existing, SINK_CREATE_FLAGS))
    os.close(os.open(tmp_path / "new", SINK_CREATE_FLAGS))
    assert existing.read_bytes() == b""
    assert (tmp_path / "new").exists()
