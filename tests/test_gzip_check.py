"""The gzip check, native and ISA-L alike (members, trailers, JSON shape); which verifier runs."""

from __future__ import annotations

import array
import gzip
import json
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ed_extractor.errors import VerificationError
from ed_extractor.services.file_transfer.base import ContentSummary
from ed_extractor.services.file_transfer.regimes.gzip import GzipCheck, GzipVerifier
from tests.backends import BACKENDS, gzip_verifier

URL = "https://downloads.example/galaxy.json.gz"
RECORDS = [{"id64": n, "name": f"Sys {n}", "coords": {"x": n, "y": 0, "z": -n}} for n in range(500)]
DOCUMENT = ("[\n" + ",\n".join(json.dumps(r) for r in RECORDS) + "\n]\n").encode()
DOCUMENT_GZ = gzip.compress(DOCUMENT, mtime=0)
SMALL = b'[\n{"a": 1},\n{"b": 2},\n{"c": 3}\n]\n'
SMALL_STORED = gzip.compress(SMALL, compresslevel=0, mtime=0)  # compressed offset = text offset
CORRUPT = "corrupt gzip stream: "
TRUNCATED = "truncated gzip stream (no complete trailer)"
FINISHED = "operation on a finished GzipVerifier"


@pytest.fixture(params=BACKENDS)
def new_verifier(request: pytest.FixtureRequest) -> Callable[[], GzipVerifier]:
    """Each test taking ``new_verifier`` runs once per implementation (native, ISA-L)."""
    return gzip_verifier(request.param)


def expected(text: bytes) -> ContentSummary:
    """What the check must report for ``text``: its size, its records if it opens an array."""
    array_document = text.lstrip(b" \t\r\n").startswith(b"[")
    return ContentSummary(
        uncompressed_bytes=len(text), records=text.count(b"\n{") if array_document else None
    )


def check_chunks(
    new_verifier: Callable[[], GzipVerifier], chunks: Iterable[bytes]
) -> ContentSummary:
    check = GzipCheck(URL, new_verifier())
    for chunk in chunks:
        check.feed(chunk)
    return check.finish()


def members(*texts: bytes, level: int = 9) -> bytes:
    return b"".join(gzip.compress(text, compresslevel=level, mtime=0) for text in texts)


# --- Good streams ------------------------------------------------------------------------------


def test_a_dump_reports_its_size_and_records(new_verifier: Callable[[], GzipVerifier]) -> None:
    assert check_chunks(new_verifier, [DOCUMENT_GZ]) == ContentSummary(len(DOCUMENT), len(RECORDS))


def test_concatenated_members_are_one_stream(new_verifier: Callable[[], GzipVerifier]) -> None:
    body = members(b"[\n{}\n,", b"{}\n]\n")
    assert check_chunks(new_verifier, [body]) == ContentSummary(uncompressed_bytes=11, records=1)


def test_a_record_split_between_members_is_counted(
    new_verifier: Callable[[], GzipVerifier],
) -> None:
    body = members(b"[\n{},\n", b"{}\n]")
    assert check_chunks(new_verifier, [body]) == ContentSummary(uncompressed_bytes=10, records=2)


@pytest.mark.parametrize(
    ("text", "records"),
    [
        (b"  \n\t[\n{}\n]", 1),  # leading whitespace before the array
        (b'{"records": [\n{}\n]}', None),  # an object: its lines are not records
        (b"", None),
        (b"  \n ", None),
    ],
    ids=["array-after-whitespace", "object", "empty-text", "only-whitespace"],
)
def test_records_are_counted_only_in_an_array(
    new_verifier: Callable[[], GzipVerifier], text: bytes, records: int | None
) -> None:
    summary = check_chunks(new_verifier, [members(text)])
    assert summary == ContentSummary(uncompressed_bytes=len(text), records=records)


@pytest.mark.parametrize("level", [0, 9], ids=["stored", "deflated"])
def test_every_split_point_gives_the_same_summary(
    new_verifier: Callable[[], GzipVerifier], level: int
) -> None:
    """Stored blocks inflate byte for byte, so some split falls between each newline and "{"."""
    body = members(SMALL, level=level)
    for split in range(len(body) + 1):
        assert check_chunks(new_verifier, [body[:split], body[split:]]) == expected(SMALL), split


def test_records_whose_newline_and_brace_arrive_apart_are_counted(
    new_verifier: Callable[[], GzipVerifier],
) -> None:
    start = SMALL_STORED.index(SMALL)  # a stored block holds the text verbatim
    newlines = [i for i in range(len(SMALL) - 1) if SMALL[i : i + 2] == b"\n{"]
    cuts = [start + i + 1 for i in newlines]  # each cut between a "\n" and its "{"
    pieces = [SMALL_STORED[a:b] for a, b in pairwise([0, *cuts, len(SMALL_STORED)])]
    assert check_chunks(new_verifier, pieces) == ContentSummary(len(SMALL), records=3)


def test_one_byte_at_a_time(new_verifier: Callable[[], GzipVerifier]) -> None:
    body = members(SMALL, b"  ", level=0)
    chunks = [body[i : i + 1] for i in range(len(body))]
    assert check_chunks(new_verifier, chunks) == expected(SMALL + b"  ")


def test_empty_chunks_change_nothing(new_verifier: Callable[[], GzipVerifier]) -> None:
    half = len(DOCUMENT_GZ) // 2
    chunks = [b"", DOCUMENT_GZ[:half], b"", b"", DOCUMENT_GZ[half:], b""]
    assert check_chunks(new_verifier, chunks) == expected(DOCUMENT)


def test_a_chunk_that_inflates_far_beyond_the_output_buffer(
    new_verifier: Callable[[], GzipVerifier],
) -> None:
    text = b"[" + b"\n{}," * 1_000_000 + b" " * 3_000_000 + b"\n]"
    assert check_chunks(new_verifier, [members(text, level=1)]) == expected(text)


@pytest.mark.parametrize("length", [(128 << 10) - 1, 128 << 10, (128 << 10) + 1, 256 << 10])
def test_texts_the_size_of_the_output_buffer(
    new_verifier: Callable[[], GzipVerifier], length: int
) -> None:
    """The native verifier inflates through 128 KiB; a member may end exactly as it fills."""
    text = (b"[" + b"\n{}," * length)[: length - 2] + b"\n]"
    for level in (0, 1, 9):
        assert check_chunks(new_verifier, [members(text, level=level)]) == expected(text)


def test_any_buffer_is_accepted(new_verifier: Callable[[], GzipVerifier]) -> None:
    half = len(DOCUMENT_GZ) // 2
    verifier = new_verifier()
    verifier.feed(bytearray(DOCUMENT_GZ[:10]))
    verifier.feed(memoryview(DOCUMENT_GZ)[10:half])
    verifier.feed(array.array("B", DOCUMENT_GZ[half:]))
    assert verifier.finish() == (len(DOCUMENT), len(RECORDS))


_TEXT_BYTES = st.sampled_from([b"[", b"]", b"{", b"}", b"\n", b" ", b",", b"x", b"\r\n"])


@given(
    pieces=st.lists(_TEXT_BYTES, max_size=400),
    member_cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=3),
    level=st.sampled_from([0, 1, 9]),
    sizes=st.lists(st.integers(min_value=0, max_value=40), max_size=30),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_text_members_and_chunking(
    new_verifier: Callable[[], GzipVerifier],
    pieces: list[bytes],
    member_cuts: list[int],
    level: int,
    sizes: list[int],
) -> None:
    text = b"".join(pieces)
    cuts = sorted({min(cut, len(text)) for cut in member_cuts})
    texts = [text[a:b] for a, b in pairwise([0, *cuts, len(text)])]
    body = members(*texts, level=level)
    chunks, offset = [], 0
    for size in sizes:
        chunks.append(body[offset : offset + size])
        offset += size
    chunks.append(body[offset:])
    assert check_chunks(new_verifier, chunks) == expected(text)


# --- Bad streams -------------------------------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_flip(DOCUMENT_GZ, 100), CORRUPT),
        (DOCUMENT_GZ[:-8] + b"\0" * 8, CORRUPT),  # CRC-32 and length zeroed
        (_flip(DOCUMENT_GZ, len(DOCUMENT_GZ) - 8), CORRUPT),  # CRC-32 only
        (_flip(DOCUMENT_GZ, len(DOCUMENT_GZ) - 1), CORRUPT),  # length only
        (b"<html>challenge</html>", CORRUPT),
        (zlib.compress(DOCUMENT), CORRUPT),  # zlib, not gzip
        (DOCUMENT_GZ + b"<html>trailing</html>", CORRUPT),  # bytes after the last member
        (DOCUMENT_GZ[: len(DOCUMENT_GZ) // 2], TRUNCATED),
        (DOCUMENT_GZ[:-1], TRUNCATED),  # the last byte of the length is missing
        (DOCUMENT_GZ[:10], TRUNCATED),  # a header alone
        (b"", TRUNCATED),
    ],
    ids=[
        "flipped-byte",
        "zeroed-trailer",
        "bad-crc",
        "bad-length",
        "not-gzip",
        "zlib",
        "garbage-after",
        "truncated",
        "trailer-cut",
        "header-only",
        "empty",
    ],
)
def test_a_bad_stream_fails_with_the_url_and_why(
    new_verifier: Callable[[], GzipVerifier], body: bytes, message: str
) -> None:
    with pytest.raises(VerificationError) as caught:
        check_chunks(new_verifier, [body[:1000], body[1000:]])
    assert caught.value.url == URL
    assert caught.value.message.startswith(message)
    assert str(caught.value).endswith(f"({URL})")


@pytest.mark.parametrize("member", [0, 1])
@pytest.mark.parametrize("split", [0, 2, 3, 4])
def test_reserved_header_flags_are_refused(
    new_verifier: Callable[[], GzipVerifier], member: int, split: int
) -> None:
    # RFC 1952: the three high FLG bits are reserved; zlib refuses them (ISA-L alone would not).
    flagged = DOCUMENT_GZ[:3] + bytes([DOCUMENT_GZ[3] | 0x20]) + DOCUMENT_GZ[4:]
    body = DOCUMENT_GZ * member + flagged
    at = len(DOCUMENT_GZ) * member + split
    with pytest.raises(VerificationError, match="corrupt gzip stream: unknown header flags set"):
        check_chunks(new_verifier, [body[:at], body[at:]])


def test_corrupt_deflate_data_is_named(new_verifier: Callable[[], GzipVerifier]) -> None:
    verifier = new_verifier()
    with pytest.raises(ValueError, match=CORRUPT) as caught:
        verifier.feed(_flip(DOCUMENT_GZ, 100))
    assert "repeated call" not in str(caught.value)  # zlib-rs's text for its fast path's errors


def test_every_prefix_of_a_stream_is_truncated_not_corrupt(
    new_verifier: Callable[[], GzipVerifier],
) -> None:
    body = members(SMALL, b"[]")
    for end in range(len(body)):
        if end == len(members(SMALL)):
            continue  # the first member is complete there: a good stream
        with pytest.raises(VerificationError, match="truncated gzip stream"):
            check_chunks(new_verifier, [body[:end]])


def test_a_member_cut_after_a_complete_one_is_truncated(
    new_verifier: Callable[[], GzipVerifier],
) -> None:
    with pytest.raises(VerificationError, match="truncated gzip stream"):
        check_chunks(new_verifier, [DOCUMENT_GZ + DOCUMENT_GZ[:30]])


def test_trailing_zero_padding_fails(new_verifier: Callable[[], GzipVerifier]) -> None:
    with pytest.raises(VerificationError, match="gzip stream"):
        check_chunks(new_verifier, [DOCUMENT_GZ + b"\0" * 4])


def test_a_corrupt_stream_stays_corrupt(new_verifier: Callable[[], GzipVerifier]) -> None:
    verifier = new_verifier()
    with pytest.raises(ValueError, match=CORRUPT) as first:
        verifier.feed(b"<html>challenge</html>")
    same = f"^{re.escape(str(first.value))}$"
    with pytest.raises(ValueError, match=same):
        verifier.feed(DOCUMENT_GZ)
    with pytest.raises(ValueError, match=same):
        verifier.finish()


def test_a_finished_verifier_refuses_more(new_verifier: Callable[[], GzipVerifier]) -> None:
    verifier = new_verifier()
    verifier.feed(DOCUMENT_GZ)
    assert verifier.finish() == (len(DOCUMENT), len(RECORDS))
    with pytest.raises(ValueError, match=FINISHED):
        verifier.feed(DOCUMENT_GZ)
    with pytest.raises(ValueError, match=FINISHED):
        verifier.finish()


def test_a_truncated_verifier_is_finished_too(new_verifier: Callable[[], GzipVerifier]) -> None:
    verifier = new_verifier()
    verifier.feed(DOCUMENT_GZ[:100])
    with pytest.raises(ValueError, match=re.escape(TRUNCATED)):
        verifier.finish()
    with pytest.raises(ValueError, match=FINISHED):
        verifier.feed(DOCUMENT_GZ[100:])


# --- Which verifier ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regime", "native_env", "chosen"),
    [
        ("gzip", "1", "ed_extractor._native.GzipVerifier"),
        ("gzip", "0", "ed_extractor.services.file_transfer.regimes.gzip.IsalGzipVerifier"),
        ("zstd", "1", "ed_extractor._native.ZstdVerifier"),
        ("zstd", "0", "ed_extractor.services.file_transfer.regimes.zstd.PythonZstdVerifier"),
    ],
)
def test_the_check_follows_the_hashing_backend(regime: str, native_env: str, chosen: str) -> None:
    if native_env == "1":
        gzip_verifier("native")  # skips when the extension is not built
    code = (
        f"from ed_extractor.services.file_transfer.regimes import {regime}\n"
        f"print(f'{{{regime}.new_verifier.__module__}}.{{{regime}.new_verifier.__qualname__}}')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ED_EXTRACTOR_NATIVE": native_env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == chosen
