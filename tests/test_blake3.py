"""BLAKE3 backends: the native hasher and the ``blake3`` package agree with the specification."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import blake3
import pytest

from tests.backends import BACKENDS, backend_module
from tests.test_hashing import chunks, progress_during

KIB = 1024
MIB = 1024 * KIB
# The official test vectors of the BLAKE3 specification (BLAKE3-team/BLAKE3,
# test_vectors/test_vectors.json, CC0): inputs of the pattern i % 251, 131 bytes of output each.
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "blake3_test_vectors.json").read_text()
)
CASES: list[dict[str, Any]] = VECTORS["cases"]
BLOB = random.Random(0xB1A4E3).randbytes(3 * MIB + 17)


def pattern(length: int) -> bytes:
    """The specification's input: 0, 1, ..., 250, 0, 1, ... of ``length`` bytes."""
    return bytes(i % 251 for i in range(length))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> ModuleType:
    """Each test taking ``backend`` runs once per implementation of the same API."""
    return backend_module(request.param)


@pytest.mark.parametrize("case", CASES, ids=[str(case["input_len"]) for case in CASES])
def test_official_vectors_one_shot(backend: ModuleType, case: dict[str, Any]) -> None:
    expected = case["hash"]
    hasher = backend.Blake3(pattern(case["input_len"]))
    assert hasher.hexdigest() == expected[:64]
    assert hasher.digest() == bytes.fromhex(expected[:64])
    assert hasher.hexdigest(length=len(expected) // 2) == expected


@pytest.mark.parametrize("chunk_size", [1, 63, 64, 1023, 1024, 1025])
def test_official_vectors_chunked(backend: ModuleType, chunk_size: int) -> None:
    for case in CASES:
        hasher = backend.Blake3()
        for piece in chunks(pattern(case["input_len"]), chunk_size):
            hasher.update(piece)
        assert hasher.hexdigest() == case["hash"][:64], case["input_len"]


@pytest.mark.parametrize(
    "size", [0, 1, 1024, 128 * KIB, 512 * KIB - 1, 512 * KIB, 3 * MIB + 17], ids=str
)
def test_equals_the_blake3_package(backend: ModuleType, size: int) -> None:
    # From 512 KiB the native hasher splits the input across rayon's threads.
    data = BLOB[:size]
    assert backend.Blake3(data).hexdigest() == blake3.blake3(data).hexdigest()
    split = backend.Blake3()
    for piece in chunks(data, 700 * KIB):
        split.update(piece)
    assert split.hexdigest() == blake3.blake3(data).hexdigest()


def test_constants(backend: ModuleType) -> None:
    assert (backend.Blake3.name, backend.Blake3.digest_size, backend.Blake3.block_size) == (
        "blake3",
        32,
        64,
    )


def test_digest_does_not_end_the_hash_and_copy_is_independent(backend: ModuleType) -> None:
    hasher = backend.Blake3(b"abc")
    first = hasher.hexdigest()
    assert hasher.hexdigest() == first
    clone = hasher.copy()
    clone.update(b"def")
    assert hasher.hexdigest() == blake3.blake3(b"abc").hexdigest()
    assert clone.hexdigest() == blake3.blake3(b"abcdef").hexdigest()


def test_any_contiguous_buffer_hashes_its_raw_bytes(backend: ModuleType) -> None:
    data = BLOB[:4096]
    view = memoryview(bytearray(data)).cast("I")
    assert backend.Blake3(view).hexdigest() == blake3.blake3(data).hexdigest()


def test_bad_length_and_non_buffer(backend: ModuleType) -> None:
    with pytest.raises(ValueError, match="length must be > 0"):
        backend.Blake3(b"x").digest(0)
    with pytest.raises(TypeError):
        backend.Blake3().update("text")


def test_native_hashing_releases_the_gil() -> None:
    native = backend_module("native")
    data = bytes(256 * MIB)
    hasher = native.Blake3()
    assert progress_during(lambda: hasher.update(data)) > 10
    assert hasher.hexdigest() == blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
