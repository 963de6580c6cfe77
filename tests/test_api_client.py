"""The rate-limited API fetcher and ``api dump``, against a local server that enforces a limit."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ed_extractor.errors import IncompleteBodyError, TransferError, VerificationError
from ed_extractor.http import make_client
from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.api_dump import MAX_ID64, parse_id64
from ed_extractor.retry import RetryPolicy
from ed_extractor.services.api_client import (
    ApiFetcher,
    BodyTooLargeError,
    HostRateLimiter,
    JsonDocumentCheck,
    PollSchedule,
    RequestWindow,
    cursor_pages,
    decoded_chunks,
    offset_pages,
)
from ed_extractor.services.api_client.body import STEP_BYTES
from ed_extractor.settings import API_MAX_BYTES
from tests.spansh_api import (
    BAD_JSON_ID,
    BOMB_ID,
    QUEUED_POLLS,
    SpanshApi,
    gzip_bomb,
    serve_api,
    system_dump,
)
from tests.test_cli import FETCH_KEYS, cli, json_lines

PEAK_RSS_LIMIT_MIB = 150
QUICK_RETRY = RetryPolicy(attempts=3, initial_wait_s=0.01, max_wait_s=5.0)


@pytest.fixture
def api() -> SpanshApi:
    return SpanshApi()


@pytest.fixture
def base_url(api: SpanshApi) -> Iterator[str]:
    with serve_api(api) as url:
        yield url


def fetcher(
    base_url: str, *, rate: float = 1000.0, burst: int = 1000, **options: Any
) -> ApiFetcher:
    options.setdefault("retry", QUICK_RETRY)
    return ApiFetcher(
        make_client(),
        base_url=base_url,
        limiter=HostRateLimiter(rate, burst),
        max_bytes=API_MAX_BYTES,
        **options,
    )


# --- the request window ---------------------------------------------------------------------------


class FakeTime:
    """A clock that only moves when someone sleeps (or the test moves it)."""

    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def window(self, rate: float, burst: int) -> RequestWindow:
        return RequestWindow(rate, burst, clock=self.clock, sleep=self.sleep)


def send(time_: FakeTime, window: RequestWindow, count: int, latency: float = 0.0) -> list[float]:
    """Send ``count`` requests one after another, each answered ``latency`` s after it went.

    Returns when each went, in seconds from the start.
    """
    sent = []
    for _ in range(count):
        with window.acquire():
            sent.append(time_.now - 100.0)
            time_.now += latency
    return sent


def test_at_rate_n_with_a_burst_of_n_a_window_holds_n_requests() -> None:
    time_ = FakeTime()
    sent = send(time_, time_.window(rate=4, burst=4), 12)
    assert sent == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]  # not 8 in the first second, as before


def test_a_burst_of_one_spaces_requests_evenly() -> None:
    time_ = FakeTime()
    sent = send(time_, time_.window(rate=4, burst=1), 6)
    assert sent == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25])


def test_a_burst_only_spaces_requests_inside_the_limit() -> None:
    time_ = FakeTime()
    assert send(time_, time_.window(rate=4, burst=2), 8) == [0, 0, 0.5, 0.5, 1, 1, 1.5, 1.5]
    time_ = FakeTime()
    assert send(time_, time_.window(rate=4, burst=100), 8) == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_place_is_free_one_window_after_the_answer_began() -> None:
    time_ = FakeTime()
    sent = send(time_, time_.window(rate=2, burst=2), 4, latency=0.3)
    assert sent == pytest.approx([0, 0.3, 1.3, 1.6])  # the server saw the first by 0.3 at most


def test_rates_below_one_and_fractional_rates_round_down_to_whole_requests_per_window() -> None:
    time_ = FakeTime()
    assert send(time_, time_.window(rate=0.5, burst=4), 3) == [0, 2, 4]
    time_ = FakeTime()
    assert send(time_, time_.window(rate=2.5, burst=4), 5) == [0, 0, 1, 1, 2]


def test_a_hold_off_delays_the_next_request() -> None:
    time_ = FakeTime()
    window = time_.window(rate=10, burst=5)
    window.hold_off(2.0)
    assert send(time_, window, 1) == [pytest.approx(2.0)]


def test_a_request_in_flight_holds_its_place_until_answered() -> None:
    window = RequestWindow(rate=2, burst=2)
    first, second = window.acquire(), window.acquire()
    let_through: list[float] = []

    def third() -> None:
        with window.acquire():
            let_through.append(time.monotonic())

    waiter = threading.Thread(target=third)
    waiter.start()
    time.sleep(0.3)
    assert not let_through  # both places are held by requests still in flight
    answered = time.monotonic()
    first.answered()
    second.answered()
    waiter.join(timeout=5)
    assert let_through[0] - answered >= 1.0


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1, 2, 2.5, 4, 10]),
    burst=st.integers(1, 12),
    latencies=st.lists(st.floats(0, 1.5), min_size=1, max_size=40),
    arrival=st.floats(0, 1),
)
def test_no_window_of_the_servers_clock_ever_sees_more_than_the_rate(
    rate: float, burst: int, latencies: list[float], arrival: float
) -> None:
    """Wherever between sending and answering the server sees a request, 1 s holds <= rate."""
    time_ = FakeTime()
    window = time_.window(rate, burst)
    seen = []
    for latency in latencies:
        with window.acquire():
            seen.append(time_.now + arrival * latency)
            time_.now += latency
    seen.sort()
    for index, moment in enumerate(seen):
        in_window = sum(1 for other in seen[index:] if other < moment + 1.0)
        assert in_window <= max(1, rate)


def test_rate_and_burst_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        HostRateLimiter(0, 1)
    with pytest.raises(ValueError, match="burst >= 1"):
        HostRateLimiter(1, 0)


def test_each_host_has_its_own_window() -> None:
    limiter = HostRateLimiter(1, 1)
    assert limiter.window("a.example") is limiter.window("a.example")
    assert limiter.window("a.example") is not limiter.window("b.example")


# --- against the rate-limited server --------------------------------------------------------------


def test_at_its_configured_rate_the_fetcher_never_causes_a_429(
    base_url: str, api: SpanshApi
) -> None:
    api.limit_per_s = 4
    api_fetcher = fetcher(base_url, rate=4.0, burst=4, retry=RetryPolicy(attempts=1))
    ids = range(20, 32)
    started = time.monotonic()
    documents = [api_fetcher.get(f"/api/dump/{i}").document for i in ids]
    elapsed = time.monotonic() - started
    assert documents == [system_dump(i) for i in ids]
    assert api.too_many == 0
    assert api.requests == 12
    assert 2.0 <= elapsed < 3.5  # 12 requests at 4 per second: windows start at 0, ~1 and ~2 s


def test_threads_sharing_a_fetcher_never_cause_a_429(base_url: str, api: SpanshApi) -> None:
    ids = range(20, 35)
    api.limit_per_s = 5
    api_fetcher = fetcher(base_url, rate=5.0, burst=5, retry=RetryPolicy(attempts=1))
    with ThreadPoolExecutor(max_workers=6) as pool:
        documents = list(pool.map(lambda i: api_fetcher.get(f"/api/dump/{i}").document, ids))
    assert documents == [system_dump(i) for i in ids]
    assert api.too_many == 0


def test_without_the_limit_the_same_requests_are_refused(base_url: str, api: SpanshApi) -> None:
    api.limit_per_s = 6
    api_fetcher = fetcher(base_url, retry=RetryPolicy(attempts=1))

    def fetch_all() -> None:
        for i in range(20, 34):
            api_fetcher.get(f"/api/dump/{i}")

    with pytest.raises(TransferError, match="HTTP 429") as caught:
        fetch_all()
    assert caught.value.retry_after == 1.0
    assert api.too_many == 1


def test_a_429_with_retry_after_is_waited_out_and_then_succeeds(
    base_url: str, api: SpanshApi
) -> None:
    api.throttle_once.add("/api/dump/7")
    started = time.monotonic()
    answer = fetcher(base_url).get("/api/dump/7")
    assert answer.document == system_dump(7)
    assert api.too_many == 1
    assert api.requests == 2
    assert time.monotonic() - started >= 1.0  # the server's Retry-After: 1, not the 10 ms backoff


def test_a_404_is_not_retried(base_url: str, api: SpanshApi) -> None:
    api.missing.add(5)
    with pytest.raises(TransferError, match="HTTP 404"):
        fetcher(base_url).get("/api/dump/5")
    assert api.requests == 1


def test_a_body_that_is_not_json_fails_without_retrying(base_url: str, api: SpanshApi) -> None:
    with pytest.raises(VerificationError, match="not JSON"):
        fetcher(base_url).get(f"/api/dump/{BAD_JSON_ID}")
    assert api.requests == 1


def test_the_auth_header_is_sent_with_every_request(base_url: str, api: SpanshApi) -> None:
    api_fetcher = fetcher(base_url, auth_header=("Authorization", "Bearer s3cret"))
    api_fetcher.get("/api/dump/1")
    api_fetcher.post("/api/systems/search", {"filters": {}})
    assert api.auth_headers == ["Bearer s3cret", "Bearer s3cret"]


# --- the search flow and pagination ------------------------------------------------------------


def test_a_search_polls_its_job_until_it_is_no_longer_queued(base_url: str, api: SpanshApi) -> None:
    pauses: list[float] = []
    api_fetcher = fetcher(base_url, poll=PollSchedule(first_s=0.5, total_s=60), sleep=pauses.append)
    result = api_fetcher.search("/api/systems/search", {"filters": {"name": {"value": "Sol"}}})
    assert result == {"status": "ok", "results": [{"name": "Sol"}]}
    assert api.result_polls == QUEUED_POLLS + 1
    assert pauses == [0.5, 1.0, 2.0]


def test_a_search_still_queued_at_the_end_of_the_schedule_fails(
    base_url: str, api: SpanshApi
) -> None:
    api.queued_polls = 10**6
    pauses: list[float] = []
    schedule = PollSchedule(first_s=1.0, factor=2.0, max_interval_s=4.0, total_s=15.0)
    api_fetcher = fetcher(base_url, poll=schedule, sleep=pauses.append)
    with pytest.raises(TransferError, match="still queued after 6 polls"):
        api_fetcher.search("/api/systems/search", {})
    assert pauses == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert sum(pauses) <= schedule.total_s


def test_offset_pages_walk_until_a_short_page(base_url: str, api: SpanshApi) -> None:
    api_fetcher = fetcher(base_url)

    def page(number: int, offset: int) -> list[int]:
        document = api_fetcher.get("/api/items", params={"page": number, "size": 10}).document
        assert offset == number * 10
        return list(document["results"])

    assert list(offset_pages(page, page_size=10)) == api.items
    assert api.requests == 3


def test_cursor_pages_follow_the_next_cursor(base_url: str, api: SpanshApi) -> None:
    api_fetcher = fetcher(base_url)

    def page(cursor: str | None) -> tuple[list[int], str | None]:
        params = {} if cursor is None else {"cursor": cursor}
        document = api_fetcher.get("/api/feed", params=params).document
        following = document["next"]
        return list(document["results"]), None if following is None else str(following)

    assert list(cursor_pages(page)) == api.items
    assert api.requests == 3


# --- ed-extractor api dump --------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0", "10477373803", str(MAX_ID64)])
def test_valid_id64s(text: str) -> None:
    assert parse_id64(text) == int(text)


@pytest.mark.parametrize("text", ["-1", str(MAX_ID64 + 1), "12a", "", " 1", "1.0", "١٢"])
def test_invalid_id64s(text: str) -> None:
    with pytest.raises(ValueError, match="id64"):
        parse_id64(text)


def test_api_dump_stores_each_id_and_a_failing_id_does_not_stop_the_others(
    base_url: str, api: SpanshApi, tmp_path: Path
) -> None:
    api.missing.add(404)
    ids = ["10477373803", "404", str(BAD_JSON_ID), "3"]
    auth = {"ED_EXTRACTOR_API_AUTH_HEADER": "Authorization: Bearer t"}
    result = cli("api", "dump", *ids, "--base-url", base_url, "--rate", "50", "--dest",
                 str(tmp_path), "--json", env=auth)  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = json_lines(result.stdout)
    assert [line["status"] for line in lines] == ["downloaded", "failed", "failed", "downloaded"]
    assert all(set(line) == FETCH_KEYS for line in lines)
    assert "HTTP 404" in str(lines[1]["error"])
    assert "not JSON" in str(lines[2]["error"])
    for id64 in (10477373803, 3):
        path = tmp_path / "api" / "dump" / f"{id64}.json"
        assert json.loads(path.read_bytes()) == system_dump(id64)
        [line] = [x for x in lines if x["name"] == f"api/dump/{id64}.json"]
        assert line["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert line["regime"] == "json"
        assert line["path"] == str(path)
    assert sorted(p.name for p in (tmp_path / "api" / "dump").iterdir()) == [
        "10477373803.json",
        "3.json",
    ]
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        assert [r.name for r in store.records()] == ["api/dump/10477373803.json", "api/dump/3.json"]
        assert store.history("api/dump/404.json")[0].status == "failed"
    assert set(api.auth_headers) == {"Bearer t"}


def test_a_failed_refresh_leaves_the_previous_dump_and_its_record(
    base_url: str, api: SpanshApi, tmp_path: Path
) -> None:
    first = cli("api", "dump", "7", "--base-url", base_url, "--dest", str(tmp_path))
    assert first.returncode == 0, first.stderr
    path = tmp_path / "api" / "dump" / "7.json"
    before = path.read_bytes()
    api.bad_json.add(7)
    second = cli("api", "dump", "7", "--base-url", base_url, "--dest", str(tmp_path), "--json")
    assert second.returncode == 1
    assert path.read_bytes() == before
    assert not (tmp_path / "api" / "dump" / "7.json.part").exists()
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        record = store.get("api/dump/7.json")
    assert record is not None
    assert record.sha256 == hashlib.sha256(before).hexdigest()


@pytest.mark.parametrize("bad", ["18446744073709551616", "-5", "sol"])
def test_a_bad_id_is_a_usage_error_before_any_request(
    base_url: str, api: SpanshApi, tmp_path: Path, bad: str
) -> None:
    result = cli("api", "dump", "1", bad, "--base-url", base_url, "--dest", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "id64" in result.stderr
    assert api.requests == 0
    assert not (tmp_path / "api").exists()


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (["--base-url", "ftp://example.org"], {}, "unsupported scheme"),
        (["--rate", "0"], {}, "positive number"),
        (["--burst", "0"], {}, "positive integer"),
        ([], {"ED_EXTRACTOR_API_AUTH_HEADER": "Bearer token-without-a-name"}, "Name: value"),
    ],
)
def test_bad_options_are_usage_errors_before_any_request(
    base_url: str, api: SpanshApi, tmp_path: Path, args: list[str], env: dict[str, str], reason: str
) -> None:
    options = ["--base-url", base_url, *args]
    result = cli("api", "dump", "1", *options, "--dest", str(tmp_path), env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert reason in line
    assert api.requests == 0


# --- the rate limit end to end ------------------------------------------------------------------


def test_api_dump_at_rate_n_with_the_default_burst_causes_no_429(
    base_url: str, api: SpanshApi, tmp_path: Path
) -> None:
    api.limit_per_s = 5  # the server: 429 past 5 requests in any 1 s window
    ids = [str(i) for i in range(20, 35)]
    no_retry = {"ED_EXTRACTOR_RETRY_ATTEMPTS": "1"}  # a 429 would fail its id
    result = cli("api", "dump", *ids, "--base-url", base_url, "--rate", "5", "--dest",
                 str(tmp_path), "--json", env=no_retry)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line["status"] for line in json_lines(result.stdout)] == ["downloaded"] * 15
    assert api.too_many == 0
    assert api.requests == 15
    # 15 requests at 5 per second: windows start at 0, ~1 and ~2 s (each id also waits for its
    # file's fsync and its manifest record, which take their time on a busy disk)
    assert 2.0 <= api.arrivals[-1] - api.arrivals[0] < 3.5


# --- bounded bodies ------------------------------------------------------------------------------


#: Runs ed-extractor from a small fresh process and reports the peak RSS of that child alone: a
#: child forked straight from pytest would start its high-water mark at pytest's own size.
_MEASURED_CHILD = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "ed_extractor", *sys.argv[1:]])
print(f"peak-rss-kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(done.returncode)
"""


def run_measured(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """Run ``ed-extractor ARGS``; return its exit code, stdout, stderr and peak RSS in MiB."""
    child = subprocess.run(
        [sys.executable, "-c", _MEASURED_CHILD, *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    stderr, _, peak = child.stderr.rstrip().rpartition("\n")
    assert peak.startswith("peak-rss-kib="), child.stderr[-2000:]
    return child.returncode, child.stdout, stderr, int(peak.split("=")[1]) / 1024


def test_a_gzip_bomb_fails_its_id_in_bounded_memory_and_keeps_nothing(
    base_url: str, api: SpanshApi, tmp_path: Path
) -> None:
    common = ["--base-url", base_url, "--dest", str(tmp_path), "--json"]
    first = cli("api", "dump", str(BOMB_ID + 1), *common)
    assert first.returncode == 0, first.stderr
    kept = tmp_path / "api" / "dump" / f"{BOMB_ID + 1}.json"
    before = kept.read_bytes()
    api.bombs.add(BOMB_ID + 1)  # the next answer for a stored id is a bomb too

    code, stdout, stderr, peak_mib = run_measured("api", "dump", str(BOMB_ID), str(BOMB_ID + 1),
                                                  "2", *common)  # fmt: skip
    assert code == 1, stderr
    bombed, refreshed, fine = json_lines(stdout)
    for line in (bombed, refreshed):
        assert line["status"] == "failed"
        assert f"larger than {API_MAX_BYTES} bytes once decoded" in str(line["error"])
        assert "\n" not in str(line["error"])
    assert fine["status"] == "downloaded"
    assert peak_mib < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB"
    # Each bombed id was asked once (no retry): at most its whole ~1 MB stream each, however much of
    # it the socket buffers took before the client hung up (a fixed 2 MiB was below two streams).
    assert api.bomb_bytes_sent <= 2 * sum(len(piece) for piece in gzip_bomb())
    assert kept.read_bytes() == before
    assert sorted(p.name for p in kept.parent.iterdir()) == ["2.json", kept.name]
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        assert store.get(f"api/dump/{BOMB_ID}.json") is None
        record = store.get(kept.name and f"api/dump/{BOMB_ID + 1}.json")
    assert record is not None
    assert record.sha256 == hashlib.sha256(before).hexdigest()


def test_an_identity_body_over_the_cap_fails_the_same_way(
    base_url: str, api: SpanshApi, tmp_path: Path
) -> None:
    api.gzip_answers = False
    small = {"ED_EXTRACTOR_API_MAX_BYTES": "100"}
    result = cli("api", "dump", "7", "--base-url", base_url, "--dest", str(tmp_path), "--json",
                 env=small)  # fmt: skip
    assert result.returncode == 1
    [line] = json_lines(result.stdout)
    assert "larger than 100 bytes once decoded (ED_EXTRACTOR_API_MAX_BYTES)" in str(line["error"])
    assert api.requests == 1  # not retried
    assert list((tmp_path / "api" / "dump").iterdir()) == []


@pytest.mark.parametrize("gzip_answers", [True, False])
def test_a_dump_is_stored_decoded_with_its_blake3_in_the_manifest(
    base_url: str, api: SpanshApi, tmp_path: Path, gzip_answers: bool
) -> None:
    api.gzip_answers = gzip_answers
    result = cli("api", "dump", "7", "--base-url", base_url, "--dest", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "api" / "dump" / "7.json"
    data = path.read_bytes()
    assert json.loads(data) == system_dump(7)
    [outcome] = json_lines(result.stdout)
    listed = cli("manifest", "--dest", str(tmp_path), "--json")
    [record] = json_lines(listed.stdout)
    assert record["blake3"] == outcome["blake3"] == blake3.blake3(data).hexdigest()
    assert record["sha256"] == outcome["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["bytes"] == outcome["bytes"] == len(data)
    assert not (tmp_path / "api" / "dump" / "7.json.part").exists()


def test_an_api_answer_that_is_a_gzip_bomb_fails_in_the_library_too(base_url: str) -> None:
    api_fetcher = ApiFetcher(make_client(), base_url=base_url, limiter=HostRateLimiter(100, 100),
                             max_bytes=1 << 20)  # fmt: skip
    with pytest.raises(BodyTooLargeError, match=f"larger than {1 << 20} bytes"):
        api_fetcher.get(f"/api/dump/{BOMB_ID}")


def raw_pieces(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def decode(data: bytes, encoding: str | None, max_bytes: int = 1 << 30) -> bytes:
    return b"".join(decoded_chunks(raw_pieces(data), encoding, url="u", max_bytes=max_bytes))


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda data: data),
        ("identity", lambda data: data),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
def test_decoded_chunks_undo_the_content_encoding(encoding: str | None, encode: Any) -> None:
    data = json.dumps(system_dump(5)).encode() * 50
    assert decode(encode(data), encoding) == data


def test_decoded_chunks_inflate_in_bounded_steps() -> None:
    pieces = decoded_chunks(gzip_bomb(64 << 20), "gzip", url="u", max_bytes=1 << 30)
    assert max(len(piece) for piece in pieces) <= STEP_BYTES


def test_decoded_chunks_stop_at_the_cap() -> None:
    data = b" " * 1000
    assert decode(gzip.compress(data), "gzip", max_bytes=1000) == data
    with pytest.raises(BodyTooLargeError, match="larger than 999 bytes"):
        decode(gzip.compress(data), "gzip", max_bytes=999)


@pytest.mark.parametrize(
    ("body", "encoding", "error", "message"),
    [
        (gzip.compress(b"{}")[:-3], "gzip", IncompleteBodyError, "gzip stream ends early"),
        (gzip.compress(b"{}") + b"junk", "gzip", VerificationError, "data after the end"),
        (b"{}", "gzip", VerificationError, "gzip stream is corrupt"),
        (b"{}", "br", VerificationError, "unsupported Content-Encoding 'br'"),
    ],
)
def test_decoded_chunks_refuse_broken_streams(
    body: bytes, encoding: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decode(body, encoding)


# --- the streaming JSON check -------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)  # fmt: skip


def json_check_whole(document: bytes) -> None:
    """Feed ``document`` in one piece and finish; ValueError when it is not JSON."""
    check = JsonDocumentCheck()
    check.feed(document)
    check.finish()


def json_check_accepts(data: bytes, cuts: list[int]) -> bool:
    """Whether JsonDocumentCheck accepts ``data`` fed in the pieces ``cuts`` make."""
    check = JsonDocumentCheck()
    bounds = [0, *sorted(cuts), len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            check.feed(data[start:end])
        check.finish()
    except ValueError:
        return False
    return True


def json_loads_accepts(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(json_values, st.booleans(), st.data())
def test_the_json_check_accepts_any_json_document_however_it_is_cut(
    value: Any, ascii_only: bool, data: st.DataObject
) -> None:
    document = json.dumps(value, ensure_ascii=ascii_only).encode()
    cuts = data.draw(st.lists(st.integers(0, len(document)), max_size=6))
    assert json_check_accepts(document, cuts)


@settings(max_examples=1000, deadline=None)
@given(json_values, st.data())
def test_the_json_check_agrees_with_json_loads_on_damaged_documents(
    value: Any, data: st.DataObject
) -> None:
    document = bytearray(json.dumps(value).encode())
    position = data.draw(st.integers(0, len(document)))
    byte = data.draw(st.sampled_from(b'{}[],:"\\ 0-1.eE+tfnrul\x01\xff'))
    if data.draw(st.booleans()) and position < len(document):
        document[position] = byte
    else:
        document.insert(position, byte)
    cuts = data.draw(st.lists(st.integers(0, len(document)), max_size=4))
    assert json_check_accepts(bytes(document), cuts) == json_loads_accepts(bytes(document))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "the body is empty"),
        (b'{"system": {"id64": 13, ', "the document ends early"),
        (b"[1,]", "unexpected b']' at byte 3"),
        (b'{"a": 1} {}', "unexpected b'{' at byte 9"),
        (b"[" * 1001, "nested deeper than 1000 levels"),
        (b'["\xff"]', "can't decode byte 0xff"),
    ],
)
def test_the_json_check_names_the_first_problem(text: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        json_check_whole(text)


def test_the_json_check_holds_one_token_not_the_document() -> None:
    check = JsonDocumentCheck()
    check.feed(b'{"names": [')
    for _ in range(1000):
        check.feed(b'"Test Sector AB-C d1", ')
        assert len(check._pending) < 64
    check.feed(b'"last"]}')
    check.finish()
    assert check.first == ord("{")
