"""The zstd check, both backends: every frame decompressed in bounded memory, records counted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ed_extractor.demo.static import StaticFileHandler
from ed_extractor.errors import VerificationError
from ed_extractor.services.file_transfer.base import ContentSummary
from ed_extractor.services.file_transfer.regimes.compressed import StreamVerifier
from ed_extractor.services.file_transfer.regimes.zstd import ZstdCheck, zstd
from tests.backends import BACKENDS, zstd_verifier
from tests.httpd import serve

URL = "http://127.0.0.1/dump.json.zst"
RECORDS = [{"id64": n, "name": f"Sys {n}"} for n in range(2000)]
DOCUMENT = ("[\n" + ",\n".join(json.dumps(r) for r in RECORDS) + "\n]\n").encode()
CHECKSUM: dict[int, int] = {zstd.CompressionParameter.checksum_flag: 1}
DOCUMENT_ZST = zstd.compress(DOCUMENT, options=CHECKSUM)
TRUNCATED = "truncated zstd stream (last frame incomplete)"
FINISHED = "operation on a finished ZstdVerifier"
BOMB_BYTES = 512 << 20
PEAK_RSS_LIMIT_MIB = 150


@pytest.fixture(params=BACKENDS)
def new_verifier(request: pytest.FixtureRequest) -> Callable[[], StreamVerifier]:
    """Each test taking ``new_verifier`` runs once per implementation (native, compression.zstd)."""
    return zstd_verifier(request.param)


def check_chunks(
    new_verifier: Callable[[], StreamVerifier], chunks: Iterable[bytes]
) -> ContentSummary:
    check = ZstdCheck(URL, new_verifier())
    for chunk in chunks:
        check.feed(chunk)
    return check.finish()


def skippable_frame(payload: bytes) -> bytes:
    """A zstd skippable frame (magic 0x184D2A50, little-endian length, payload)."""
    return (0x184D2A50).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def test_a_dump_reports_its_size_and_records(new_verifier: Callable[[], StreamVerifier]) -> None:
    assert check_chunks(new_verifier, [DOCUMENT_ZST]) == ContentSummary(len(DOCUMENT), len(RECORDS))


def test_concatenated_and_skippable_frames_are_one_stream(
    new_verifier: Callable[[], StreamVerifier],
) -> None:
    half = DOCUMENT.index(b"\n{", len(DOCUMENT) // 2)
    body = (
        zstd.compress(DOCUMENT[:half])
        + skippable_frame(b"metadata")
        + zstd.compress(DOCUMENT[half:], options=CHECKSUM)
    )
    assert check_chunks(new_verifier, [body]) == ContentSummary(len(DOCUMENT), len(RECORDS))


def test_any_split_gives_the_same_summary(new_verifier: Callable[[], StreamVerifier]) -> None:
    body = DOCUMENT_ZST + zstd.compress(b"\n")
    expected = ContentSummary(len(DOCUMENT) + 1, len(RECORDS))
    for split in range(0, len(body), 97):
        assert check_chunks(new_verifier, [body[:split], body[split:]]) == expected, split
    assert check_chunks(new_verifier, [body[i : i + 1] for i in range(len(body))]) == expected


def test_a_streamed_frame_without_content_size(new_verifier: Callable[[], StreamVerifier]) -> None:
    compressor = zstd.ZstdCompressor(options=CHECKSUM)
    body = b"".join(
        compressor.compress(DOCUMENT[i : i + 5000]) for i in range(0, len(DOCUMENT), 5000)
    )
    body += compressor.flush()
    assert check_chunks(new_verifier, [body]) == ContentSummary(len(DOCUMENT), len(RECORDS))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", TRUNCATED, id="empty"),
        pytest.param(DOCUMENT_ZST[:-5], TRUNCATED, id="cut-in-checksum"),
        pytest.param(DOCUMENT_ZST + DOCUMENT_ZST[:30], TRUNCATED, id="second-frame-cut"),
        pytest.param(b"<!DOCTYPE html>" * 10, "corrupt zstd stream", id="html"),
        pytest.param(DOCUMENT_ZST + b"\0" * 8, "corrupt zstd stream", id="trailing-zeros"),
        pytest.param(
            DOCUMENT_ZST[:-1] + bytes([DOCUMENT_ZST[-1] ^ 1]), "corrupt zstd stream", id="checksum"
        ),
    ],
)
def test_bad_streams_fail_in_one_line(
    new_verifier: Callable[[], StreamVerifier], body: bytes, message: str
) -> None:
    with pytest.raises(VerificationError, match=re.escape(message)) as caught:
        check_chunks(new_verifier, [body[:1000], body[1000:]])
    assert "\n" not in str(caught.value)


def test_a_corrupt_stream_stays_corrupt(new_verifier: Callable[[], StreamVerifier]) -> None:
    verifier = new_verifier()
    with pytest.raises(ValueError, match="corrupt zstd stream"):
        verifier.feed(b"not zstd at all")
    with pytest.raises(ValueError, match="corrupt zstd stream"):
        verifier.feed(DOCUMENT_ZST)
    with pytest.raises(ValueError, match="corrupt zstd stream"):
        verifier.finish()
    with pytest.raises(ValueError, match=FINISHED):
        verifier.finish()


def test_a_finished_verifier_refuses_more(new_verifier: Callable[[], StreamVerifier]) -> None:
    verifier = new_verifier()
    verifier.feed(memoryview(DOCUMENT_ZST))
    assert verifier.finish() == (len(DOCUMENT), len(RECORDS))
    with pytest.raises(ValueError, match=FINISHED):
        verifier.feed(DOCUMENT_ZST)
    with pytest.raises(ValueError, match=FINISHED):
        verifier.finish()


# --- Memory: a zstd bomb ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``bomb.zst``: 512 MiB of zeros in about 16 KB, written without holding it."""
    root = tmp_path_factory.mktemp("bomb")
    compressor = zstd.ZstdCompressor()
    zeros = bytes(1 << 20)
    with (root / "bomb.zst").open("wb") as file:
        for _ in range(BOMB_BYTES // len(zeros)):
            file.write(compressor.compress(zeros))
        file.write(compressor.flush())
    return root


# The fetch runs in a child of a fresh interpreter, so that RUSAGE_CHILDREN's peak is the fetch's
# alone (not that of an earlier child of the test process).
_MEASURE_FETCH = textwrap.dedent(
    """
    import resource, subprocess, sys
    fetch = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
    sys.stderr.write(fetch.stderr)
    print(fetch.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(fetch.stdout, end="")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zstd_bomb_is_checked_in_bounded_memory(
    backend: str, bomb_root: Path, tmp_path: Path
) -> None:
    zstd_verifier(backend)  # skips when the extension is not built
    assert (bomb_root / "bomb.zst").stat().st_size < 32 << 10
    env = {**os.environ, "ED_EXTRACTOR_NATIVE": "1" if backend == "native" else "0"}
    with serve(StaticFileHandler.for_root(bomb_root)) as base:
        fetch = [sys.executable, "-m", "ed_extractor", "fetch", f"{base}/bomb.zst"]
        measured = subprocess.run(
            [sys.executable, "-c", _MEASURE_FETCH, *fetch, "--dest", str(tmp_path), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        )
    first, *lines = measured.stdout.splitlines()
    returncode, peak_kib = (int(field) for field in first.split())
    assert returncode == 0, measured.stderr
    (outcome,) = (json.loads(line) for line in lines)
    assert (outcome["status"], outcome["regime"]) == ("downloaded", "zstd")
    assert peak_kib / 1024 < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_kib / 1024:.0f} MiB"
