"""The native gzip check's two inflaters, ISA-L (the default) and zlib-rs, end every stream alike.

Each example feeds both the same chunks; both must end the same way (the same summary, or both
refusing the stream as corrupt, or both as truncated), as ``test_compressed_properties`` asks of
the native and the Python backend (and with its example count, ``ED_EXTRACTOR_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import gzip
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.backends import backend_module
from tests.test_compressed_properties import PROPERTY, Outcome, compress, dump_text, run

INFLATERS = ["isal", "zlib-rs"]
KEYWORDS: list[dict[str, str]] = [{}, {"inflater": "isal"}, {"inflater": "zlib-rs"}]
cut_lists = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=6)


def outcomes(body: bytes, cuts: list[int]) -> dict[str, Outcome]:
    """What each inflater makes of ``body`` fed in pieces split at ``cuts``."""
    native = backend_module("native").GzipVerifier
    return {name: run(partial(native, inflater=name), body, cuts) for name in INFLATERS}


def assert_inflaters_agree(body: bytes, cuts: list[int]) -> Outcome:
    isal, zlib_rs = outcomes(body, cuts).values()
    if isinstance(isal, str) and isinstance(zlib_rs, str):
        corrupt = "error: corrupt gzip stream: "
        assert isal.startswith(corrupt) == zlib_rs.startswith(corrupt), (isal, zlib_rs)
    else:
        assert isal == zlib_rs
    return isal


def test_the_default_inflater_is_isal() -> None:
    native = backend_module("native").GzipVerifier
    body = bytearray(gzip.compress(b"[\n{}\n]\n", mtime=0))
    body[-8] ^= 1  # the CRC-32: each inflater has its own words for the mismatch
    default, isal, zlib_rs = (run(partial(native, **kw), bytes(body), []) for kw in KEYWORDS)
    assert default == isal != zlib_rs


def test_an_unknown_inflater_is_refused() -> None:
    with pytest.raises(ValueError, match='unknown gzip inflater "zlib"'):
        backend_module("native").GzipVerifier(inflater="zlib")


@PROPERTY
@given(body=st.binary(max_size=4096), cuts=cut_lists)
def test_arbitrary_bytes(body: bytes, cuts: list[int]) -> None:
    assert_inflaters_agree(body, cuts)


@PROPERTY
@given(
    count=st.integers(min_value=1, max_value=4), level=st.sampled_from([1, 6, 9]), cuts=cut_lists
)
def test_a_dump_in_members(count: int, level: int, cuts: list[int]) -> None:
    text = dump_text()
    outcome = assert_inflaters_agree(compress("gzip", text, count, level), cuts)
    assert outcome == (len(text), text.count(b"\n{"))


@PROPERTY
@given(
    count=st.integers(min_value=1, max_value=4),
    flips=st.lists(st.integers(min_value=0), min_size=1, max_size=3),
    end=st.integers(min_value=1),
    cuts=cut_lists,
)
def test_flipped_and_cut_dumps(count: int, flips: list[int], end: int, cuts: list[int]) -> None:
    body = bytearray(compress("gzip", dump_text(), count, 6))
    for flip in flips:
        position = flip % (len(body) * 8)
        body[position // 8] ^= 1 << (position % 8)
    assert_inflaters_agree(bytes(body[: end % (len(body) + 1)]), cuts)
