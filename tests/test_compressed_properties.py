"""Property tests of the gzip and zstd checks: hostile bytes never crash, hang or split backends.

Each example runs the native and the pure-Python verifier on the same chunks; both must end the
same way (a summary, or ``ValueError``), with the same summary when valid. The default example
count keeps ``make test`` short; ``make fuzz`` (``ED_EXTRACTOR_FUZZ_EXAMPLES``, 5000 by default)
runs longer, with fresh random examples.
"""

from __future__ import annotations

import gzip
import itertools
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ed_extractor.demo.generator import generate_dump
from ed_extractor.services.file_transfer.regimes.compressed import StreamVerifier
from ed_extractor.services.file_transfer.regimes.zstd import zstd
from tests.backends import gzip_verifier, zstd_verifier

EXAMPLES = int(os.environ.get("ED_EXTRACTOR_FUZZ_EXAMPLES", "25"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=5000,  # milliseconds per example: a verifier that spins is a failure, not a slow test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=EXAMPLES <= 25,  # the short run in make test is reproducible
)
Outcome = tuple[int, int | None] | str
VERIFIERS: dict[str, Callable[[str], Callable[[], StreamVerifier]]] = {
    "gzip": gzip_verifier,
    "zstd": zstd_verifier,
}


@cache
def dump_text() -> bytes:
    """The text of a small real Spansh-style dump (the demo generator's), a few hundred KB."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "galaxy.json.gz"
        generate_dump(path, systems=40, seed=3, populated=True, stations=True, workers=1)
        return gzip.decompress(path.read_bytes())


@cache
def compress(fmt: str, text: bytes, pieces: int, level: int) -> bytes:
    """``text`` as ``pieces`` gzip members or zstd frames, one after the other."""
    step = max(1, -(-len(text) // pieces))
    parts = [text[i : i + step] for i in range(0, len(text), step)] or [b""]
    if fmt == "gzip":
        return b"".join(gzip.compress(part, compresslevel=level, mtime=0) for part in parts)
    options: dict[int, int] = {zstd.CompressionParameter.compression_level: level}
    options[zstd.CompressionParameter.checksum_flag] = 1
    return b"".join(zstd.compress(part, options=options) for part in parts)


def run(new_verifier: Callable[[], StreamVerifier], body: bytes, cuts: list[int]) -> Outcome:
    """Feed ``body`` split at ``cuts``; the summary, or the error's message."""
    verifier = new_verifier()
    bounds = [0, *sorted(c % (len(body) + 1) for c in cuts), len(body)]
    try:
        for start, end in itertools.pairwise(bounds):
            verifier.feed(body[start:end])
        return verifier.finish()
    except ValueError as exc:
        return f"error: {exc}"


def assert_backends_agree(fmt: str, body: bytes, cuts: list[int]) -> Outcome:
    native = run(VERIFIERS[fmt]("native"), body, cuts)
    python = run(VERIFIERS[fmt]("python"), body, cuts)
    assert isinstance(native, str) == isinstance(python, str), (native, python)
    if not isinstance(native, str):
        assert native == python
    return native


fmts = pytest.mark.parametrize("fmt", sorted(VERIFIERS))
cut_lists = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=6)
pieces = st.integers(min_value=1, max_value=4)
levels = st.sampled_from([1, 6, 9])


@fmts
@PROPERTY
@given(body=st.binary(max_size=4096), cuts=cut_lists)
def test_arbitrary_bytes(fmt: str, body: bytes, cuts: list[int]) -> None:
    assert_backends_agree(fmt, body, cuts)


@fmts
@PROPERTY
@given(count=pieces, level=levels, cuts=cut_lists)
def test_a_real_dump_in_members_or_frames_is_valid(
    fmt: str, count: int, level: int, cuts: list[int]
) -> None:
    text = dump_text()
    outcome = assert_backends_agree(fmt, compress(fmt, text, count, level), cuts)
    assert outcome == (len(text), text.count(b"\n{"))


@fmts
@PROPERTY
@given(count=pieces, end=st.integers(min_value=0), cuts=cut_lists)
def test_a_truncated_dump_is_invalid(fmt: str, count: int, end: int, cuts: list[int]) -> None:
    body = compress(fmt, dump_text(), count, 6)
    outcome = assert_backends_agree(fmt, body[: end % len(body)], cuts)
    assert isinstance(outcome, str)


@fmts
@PROPERTY
@given(
    count=pieces, flips=st.lists(st.integers(min_value=0), min_size=1, max_size=3), cuts=cut_lists
)
def test_bit_flips_in_a_dump(fmt: str, count: int, flips: list[int], cuts: list[int]) -> None:
    body = bytearray(compress(fmt, dump_text(), count, 6))
    for flip in flips:
        position = flip % (len(body) * 8)
        body[position // 8] ^= 1 << (position % 8)
    assert_backends_agree(fmt, bytes(body), cuts)


@fmts
@PROPERTY
@given(count=pieces, junk=st.binary(min_size=1, max_size=64), cuts=cut_lists)
def test_bytes_after_the_last_member_or_frame_are_invalid(
    fmt: str, count: int, junk: bytes, cuts: list[int]
) -> None:
    outcome = assert_backends_agree(fmt, compress(fmt, dump_text(), count, 1) + junk, cuts)
    assert isinstance(outcome, str)
