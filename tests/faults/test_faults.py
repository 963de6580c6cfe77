"""Fault injection: each test is one server misbehaviour and what ed-extractor must make of it.

Every scenario runs the real CLI in a subprocess against a FaultServer on 127.0.0.1 and asserts the
exit code, the stored bytes' SHA-256 against the server's (or that nothing is stored under the final
name), the manifest record, and, from the server's own counters, what the client asked for.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import (
    assert_failed,
    assert_stored,
    cli,
    explain,
    gzip_dump,
    leftovers,
    outcome_of,
    payload,
    record_of,
    sha256,
    start_cli,
)
from tests.faults.server import OK, Exchange, FaultServer, Plan, Version, http_date

Start = Callable[..., FaultServer]

SIZE = 256 * 1024
HALF = SIZE // 2
BODY = payload(SIZE)
NAME = "dump.bin"
LM1 = http_date(1_700_000_000)
LM2 = http_date(1_700_086_400)


def fetch(
    server: FaultServer,
    dest: Path,
    *,
    path: str = NAME,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return cli("fetch", server.url(path), "--dest", str(dest), "--json", env=env, timeout=timeout)


# --- interrupted bodies: retried in the same run, resumed from where they stopped ---


def test_a_truncated_body_is_retried_and_resumed_from_where_it_stopped(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF)])
    result = fetch(server, dest)
    outcome = assert_stored(result, dest, NAME, BODY, server)
    first, second = server.body_gets()
    assert first.sent == HALF
    assert second.range == f"bytes={HALF}-", explain(result, server)
    assert second.if_range == '"v1"'
    assert second.status == 206
    assert server.body_bytes() == SIZE  # nothing sent twice
    assert outcome["etag"] == '"v1"'
    assert record_of(dest, NAME).etag == '"v1"'  # type: ignore[union-attr]


def test_bytes_received_before_an_abrupt_cut_are_not_fetched_again(
    fault_server: Start, dest: Path
) -> None:
    # The connection closes right after the last byte: whatever the client had read (all of it,
    # since a FIN comes after the data) must be on disk when it resumes, not lost in a queue.
    body = payload(8 << 20, seed=5)
    cut = 6 << 20
    server = fault_server(Version(body), [Plan(cut_after=cut, cut_pause=0)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, body, server)
    first, second = server.body_gets()
    assert first.sent == cut
    assert second.range == f"bytes={cut}-", explain(result, server)
    assert server.body_bytes() == len(body)


def test_a_connection_reset_mid_body_is_retried_and_resumed(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF, reset=True)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    _, second = server.body_gets()
    start = second.range_start
    # An RST may destroy bytes still in the client's receive buffer: resume at or before HALF.
    assert start is not None, explain(result, server)
    assert 0 < start <= HALF, explain(result, server)
    assert second.if_range == '"v1"'
    assert second.status == 206
    assert second.sent == SIZE - start


def test_a_stall_longer_than_the_read_timeout_is_retried_without_hanging(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF, stall=True)])
    began = time.monotonic()
    result = fetch(server, dest, env={"ED_EXTRACTOR_READ_TIMEOUT": "1"}, timeout=45)
    assert_stored(result, dest, NAME, BODY, server)
    first, second = server.body_gets()
    # The server never ends the stalled response: only the client's read timeout (1 s) does.
    assert second.at - first.at < 6, explain(result, server)
    assert second.range == f"bytes={HALF}-"
    assert time.monotonic() - began < 30


def test_a_connection_dropped_before_any_answer_is_retried(fault_server: Start, dest: Path) -> None:
    server = fault_server(Version(BODY), [Plan(drop=True)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    assert len(server.body_gets()) == 2


def test_a_gzip_dump_resumed_mid_stream_is_still_checked_whole(
    fault_server: Start, dest: Path
) -> None:
    body, records = gzip_dump(4000)
    server = fault_server(
        Version(body, content_type="application/gzip"), [Plan(cut_after=len(body) // 2)]
    )
    result = fetch(server, dest, path="galaxy_1day.json.gz")
    outcome = assert_stored(result, dest, "galaxy_1day.json.gz", body, server)
    assert outcome["regime"] == "gzip"
    assert server.body_gets()[1].range == f"bytes={len(body) // 2}-", explain(result, server)
    record = record_of(dest, "galaxy_1day.json.gz")
    assert record is not None
    assert record.records == records  # the check saw the resumed prefix too


def test_a_part_kept_by_a_failed_run_is_continued_by_the_next_run(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF)])
    failed = fetch(server, dest, env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "1"})
    assert_failed(failed, dest, NAME, server, part_allowed=True)
    assert leftovers(dest) == {f"{NAME}.part", f"{NAME}.part.resume"}, explain(failed, server)
    assert (dest / f"{NAME}.part").read_bytes() == BODY[:HALF]

    mark = len(server.seen())
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    [resumed] = server.body_gets(since=mark)
    assert resumed.range == f"bytes={HALF}-", explain(result, server)
    assert resumed.if_range == '"v1"'
    assert resumed.sent == SIZE - HALF


def test_a_kept_part_of_a_file_since_replaced_is_restarted_by_the_next_run(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY, etag='"v1"', last_modified=LM1), [Plan(cut_after=HALF)])
    failed = fetch(server, dest, env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "1"})
    assert_failed(failed, dest, NAME, server, part_allowed=True)

    new = Version(payload(SIZE, seed=4), etag='"v2"', last_modified=LM2)
    server.set_version(new)
    result = fetch(server, dest)
    outcome = assert_stored(result, dest, NAME, new.body, server)
    assert outcome["etag"] == '"v2"'
    record = record_of(dest, NAME)
    assert record is not None
    assert record.etag == '"v2"'


# --- statuses: 5xx and 429 retried honouring Retry-After, other 4xx final at once ---


def test_a_503_on_the_probe_is_retried_too(fault_server: Start, dest: Path) -> None:
    def every(exchange: Exchange) -> Plan | None:
        return Plan(status=503) if exchange.index < 2 else None

    server = fault_server(Version(BODY), every=every)
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    assert [e.status for e in server.seen()][:2] == [503, 503]


def _gaps(server: FaultServer) -> list[float]:
    gets = server.body_gets()
    return [b.at - a.at for a, b in itertools.pairwise(gets)]


def test_503_twice_then_200_is_retried_after_the_retry_after_seconds(
    fault_server: Start, dest: Path
) -> None:
    busy = Plan(status=503, headers={"Retry-After": "1"})
    server = fault_server(Version(BODY), [busy, busy])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    assert [g.status for g in server.body_gets()] == [503, 503, 200]
    gaps = _gaps(server)
    # The backoff alone waits ~0.05 s (ED_EXTRACTOR_RETRY_INITIAL_WAIT_S); Retry-After says 1 s.
    assert all(0.9 <= gap < 5 for gap in gaps), (gaps, explain(result, server))


def test_429_with_an_http_date_retry_after_waits_until_that_date(
    fault_server: Start, dest: Path
) -> None:
    def plans(n: int, exchange: Exchange) -> Plan:
        if n == 0:  # HTTP dates have whole seconds: this one is 1 to 2 s ahead
            return Plan(status=429, headers={"Retry-After": http_date(time.time() + 2)})
        return OK

    server = fault_server(Version(BODY), plans)
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    assert [g.status for g in server.body_gets()] == [429, 200]
    [gap] = _gaps(server)
    assert 0.9 <= gap < 5, (gap, explain(result, server))


def test_retries_stop_at_the_total_retry_time(fault_server: Start, dest: Path) -> None:
    server = fault_server(
        Version(BODY), lambda n, e: Plan(status=503, headers={"Retry-After": "1"})
    )
    began = time.monotonic()
    result = fetch(
        server,
        dest,
        env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "50", "ED_EXTRACTOR_RETRY_TOTAL_S": "2.5"},
    )
    elapsed = time.monotonic() - began
    error = assert_failed(result, dest, NAME, server)
    assert "503" in error
    assert 2 <= len(server.body_gets()) <= 5, explain(result, server)
    assert elapsed < 15


def test_a_404_everywhere_fails_at_once_with_a_single_get(fault_server: Start, dest: Path) -> None:
    server = fault_server(None)
    result = fetch(server, dest)
    error = assert_failed(result, dest, NAME, server)
    assert "404" in error
    assert server.count("GET") <= 1, explain(result, server)
    assert server.count("HEAD") <= 1, explain(result, server)


@pytest.mark.parametrize("status", [404, 403, 410])
def test_a_client_error_on_the_body_fails_at_once_with_one_body_get(
    status: int, fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), lambda n, e: Plan(status=status))
    result = fetch(server, dest)
    error = assert_failed(result, dest, NAME, server)
    assert str(status) in error
    assert len(server.body_gets()) == 1, explain(result, server)


def test_408_is_retried(fault_server: Start, dest: Path) -> None:
    server = fault_server(Version(BODY), [Plan(status=408)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    assert [g.status for g in server.body_gets()] == [408, 200]


# --- resume answered wrongly: never glue bytes of two different answers together ---


def test_a_range_request_answered_with_200_takes_that_answer_as_the_whole_body(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF), Plan(ignore_range=True)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    gets = server.body_gets()
    assert len(gets) == 2, explain(result, server)
    assert gets[1].range == f"bytes={HALF}-"
    assert gets[1].status == 200
    assert gets[1].sent == SIZE


@pytest.mark.parametrize(
    "wrong",
    [Plan(range_shift=100), Plan(range_total=SIZE + 1)],
    ids=["wrong-start", "wrong-total"],
)
def test_a_206_with_the_wrong_content_range_is_rejected_and_restarted(
    wrong: Plan, fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF), wrong])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    gets = server.body_gets()
    assert gets[1].range == f"bytes={HALF}-", explain(result, server)
    assert gets[1].status == 206
    assert len(gets) >= 3, explain(result, server)
    assert gets[-1].range_start in (None, 0), explain(result, server)  # started over


def test_a_file_changed_between_two_attempts_restarts_through_if_range(
    fault_server: Start, dest: Path
) -> None:
    old = Version(BODY, etag='"v1"', last_modified=LM1)
    new = Version(payload(SIZE, seed=2), etag='"v2"', last_modified=LM2)  # same length
    server = fault_server(old)

    def plans(n: int, exchange: Exchange) -> Plan:
        if n == 0:
            server.set_version(new)  # replaced on the server while the first body is cut
            return Plan(version=old, cut_after=HALF)
        return OK

    server.plans = plans
    result = fetch(server, dest)
    outcome = assert_stored(result, dest, NAME, new.body, server)
    gets = server.body_gets()
    assert gets[1].range == f"bytes={HALF}-", explain(result, server)
    assert gets[1].if_range == '"v1"'
    assert gets[1].status == 200  # If-Range failed: the whole new file
    record = record_of(dest, NAME)
    assert record is not None
    assert (record.etag, record.last_modified) == ('"v2"', LM2)
    assert (outcome["etag"], outcome["last_modified"]) == ('"v2"', LM2)


def test_a_file_replaced_between_probe_and_download_records_the_new_validators(
    fault_server: Start, dest: Path
) -> None:
    old = Version(BODY, etag='"v1"', last_modified=LM1)
    new = Version(payload(SIZE + 1000, seed=3), etag='"v2"', last_modified=LM2)
    server = fault_server(old)

    def plans(n: int, exchange: Exchange) -> Plan:
        server.set_version(new)
        return OK

    server.plans = plans
    result = fetch(server, dest)
    outcome = assert_stored(result, dest, NAME, new.body, server)
    record = record_of(dest, NAME)
    assert record is not None
    assert (record.etag, record.last_modified) == ('"v2"', LM2), explain(result, server)
    assert outcome["etag"] == '"v2"'


def test_without_accept_ranges_a_retry_restarts_from_zero(fault_server: Start, dest: Path) -> None:
    server = fault_server(Version(BODY), [Plan(cut_after=HALF)], accept_ranges=False)
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    _, second = server.body_gets()
    assert second.status == 200, explain(result, server)
    assert second.sent == SIZE


@pytest.mark.parametrize("with_last_modified", [True, False], ids=["weak+lm", "weak-only"])
def test_a_weak_etag_is_never_sent_as_if_range(
    with_last_modified: bool, fault_server: Start, dest: Path
) -> None:
    version = Version(BODY, etag='W/"v1"', last_modified=LM1 if with_last_modified else None)
    server = fault_server(version, [Plan(cut_after=HALF)])
    result = fetch(server, dest)
    assert_stored(result, dest, NAME, BODY, server)
    sent = [e.if_range for e in server.seen() if e.if_range is not None]
    assert not any(value.startswith("W/") for value in sent), explain(result, server)
    second = server.body_gets()[1]
    if with_last_modified:  # Last-Modified is the validator: resume
        assert second.range == f"bytes={HALF}-", explain(result, server)
        assert second.if_range == LM1
        assert second.status == 206
    else:  # no usable validator: no resume
        assert second.range_start in (None, 0), explain(result, server)
        assert second.status == 200


def test_a_content_length_longer_than_the_body_fails_after_the_retries(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(
        Version(BODY), every=lambda e: Plan(declared_extra=1000), accept_ranges=False
    )
    result = fetch(server, dest, env={"ED_EXTRACTOR_RETRY_ATTEMPTS": "3"})
    error = assert_failed(result, dest, NAME, server)
    assert str(SIZE + 1000) in error, error
    assert len(server.body_gets()) == 3, explain(result, server)


def test_a_content_length_shorter_than_the_body_contradicts_the_probe_and_fails(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), every=lambda e: Plan(declared_extra=-1000))
    result = fetch(server, dest)
    error = assert_failed(result, dest, NAME, server)
    assert f"Content-Length {SIZE - 1000} contradicts the probed length {SIZE}" in error, error
    assert len(server.body_gets()) == 1, explain(result, server)  # a lie is not retried


# --- hostile servers and names ---


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return path


def test_an_endless_body_is_stopped_by_max_bytes(
    fault_server: Start, dest: Path, tmp_path: Path
) -> None:
    server = fault_server(Version(BODY), every=lambda e: Plan(endless=True), accept_ranges=False)
    config = _config(
        tmp_path, f'[[source]]\nurl = "{server.url("endless.bin")}"\nmax_bytes = 300000\n'
    )
    began = time.monotonic()
    result = cli("run", "--config", str(config), "--dest", str(dest), "--json", timeout=45)
    error = assert_failed(result, dest, "endless.bin", server)
    assert "max_bytes" in error
    assert time.monotonic() - began < 30
    assert server.body_bytes() < 64 << 20, explain(result, server)


def test_a_redirect_loop_fails_with_too_many_redirects(fault_server: Start, dest: Path) -> None:
    server = fault_server(Version(BODY), redirects={"/a.bin": "/b.bin", "/b.bin": "/a.bin"})
    result = fetch(server, dest, path="a.bin")
    error = assert_failed(result, dest, "a.bin", server)
    assert "too many redirects" in error.lower()
    assert len(server.seen()) < 200


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("..%2F..%2Fx.bin", "_.._x.bin"),
        ("%2e%2e%2f%2e%2e%2fetc%2fpasswd", "_.._etc_passwd"),
        ("a%00b.bin", "ab.bin"),
        ("..%5C..%5Cx.bin", "_.._x.bin"),
        ("%2e%2e", None),  # nothing usable: a usage error, nothing written
    ],
)
def test_hostile_url_names_stay_inside_dest(
    path: str, name: str | None, fault_server: Start, tmp_path: Path
) -> None:
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before = _files_under(tmp_path)
    server = fault_server(Version(BODY))
    result = fetch(server, dest, path=path)
    created = _files_under(tmp_path) - before
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in created), created
    if name is None:
        assert result.returncode == 2, explain(result, server)
        assert leftovers(dest) == set()
        return
    outcome = assert_stored(result, dest, name, BODY, server)
    assert Path(outcome["path"]).resolve().is_relative_to(dest.resolve())


def test_the_name_comes_from_the_requested_url_not_the_redirect_target(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY), redirects={"/nice.bin": "/..%2F..%2Fevil.bin"})
    result = fetch(server, dest, path="nice.bin")
    assert_stored(result, dest, "nice.bin", BODY, server)


def test_a_hostile_config_name_is_sanitised_inside_dest(
    fault_server: Start, tmp_path: Path
) -> None:
    dest = tmp_path / "a" / "dest"
    server = fault_server(Version(BODY))
    config = _config(
        tmp_path, f'[[source]]\nurl = "{server.url("x.bin")}"\nname = "../../../escaped.bin"\n'
    )
    result = cli("run", "--config", str(config), "--dest", str(dest), "--json")
    outcome = assert_stored(result, dest, "_.._.._escaped.bin", BODY, server)
    assert Path(outcome["path"]).parent == dest.resolve()
    assert not list(tmp_path.rglob("escaped.bin"))


@pytest.mark.parametrize("link", [NAME, f"{NAME}.part"])
def test_a_symlink_in_dest_pointing_outside_is_refused(
    link: str, fault_server: Start, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    (dest / link).symlink_to(outside)
    server = fault_server(Version(BODY))
    result = fetch(server, dest)
    assert result.returncode == 1, explain(result, server)
    assert outcome_of(result)["status"] == "failed"
    assert outside.read_bytes() == b"precious"
    assert (dest / link).is_symlink()
    assert record_of(dest, NAME) is None


def test_a_zero_byte_file_is_stored_and_then_unchanged(fault_server: Start, dest: Path) -> None:
    server = fault_server(Version(b""))
    result = fetch(server, dest, path="empty.bin")
    assert_stored(result, dest, "empty.bin", b"", server)
    assert outcome_of(result)["sha256"] == sha256(b"")
    again = fetch(server, dest, path="empty.bin")
    assert again.returncode == 0, explain(again, server)
    assert outcome_of(again)["status"] == "unchanged"


def test_the_deadline_stops_a_server_that_trickles_forever(fault_server: Start, dest: Path) -> None:
    # One byte every 0.3 s: the read timeout (1 s) never fires; only the deadline can end it.
    server = fault_server(Version(BODY), lambda n, e: Plan(throttle=(1, 0.3)))
    began = time.monotonic()
    result = fetch(server, dest, env={"ED_EXTRACTOR_DEADLINE_S": "3"}, timeout=45)
    elapsed = time.monotonic() - began
    assert_failed(result, dest, NAME, server, part_allowed=True)
    assert elapsed < 15, elapsed


# --- two runs on one destination ---

PATIENT = {
    "ED_EXTRACTOR_READ_TIMEOUT": "30"
}  # the first run, held by the server, must not time out


def test_a_second_run_on_a_busy_destination_fails_at_once(fault_server: Start, dest: Path) -> None:
    release = threading.Event()
    server = fault_server(Version(BODY), [Plan(hold=release)])  # the first run holds the lock
    first = start_cli("fetch", server.url(NAME), "--dest", str(dest), "--json", env=PATIENT)
    try:
        assert server.wait_for(lambda: bool(server.body_gets()), 30), "first run never started"
        seen = len(server.seen())
        second = fetch(server, dest, env={"ED_EXTRACTOR_LOCK_WAIT_S": "0"})
        assert second.returncode == 1, explain(second, server)
        assert "another ed-extractor run" in second.stderr
        assert len(server.seen()) == seen  # it never talked to the server
        release.set()
        out, err = first.communicate(timeout=60)
    finally:
        release.set()
        first.kill()
    done = subprocess.CompletedProcess(first.args, first.returncode, out, err)
    assert_stored(done, dest, NAME, BODY, server)


def test_a_second_run_with_a_lock_wait_runs_after_the_first(
    fault_server: Start, dest: Path
) -> None:
    release = threading.Event()
    server = fault_server(Version(BODY), [Plan(hold=release)])
    first = start_cli("fetch", server.url(NAME), "--dest", str(dest), "--json", env=PATIENT)
    second = None
    try:
        assert server.wait_for(lambda: bool(server.body_gets()), 30), "first run never started"
        seen = len(server.seen())
        second = start_cli(
            "fetch", server.url(NAME), "--dest", str(dest), "--json",
            env={"ED_EXTRACTOR_LOCK_WAIT_S": "30"},
        )  # fmt: skip
        time.sleep(1.5)
        assert second.poll() is None, "the second run did not wait for the lock"
        assert len(server.seen()) == seen  # waiting, not interleaving
        release.set()
        out, err = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        release.set()
        first.kill()
        if second is not None:
            second.kill()
    done = subprocess.CompletedProcess(first.args, first.returncode, out, err)
    assert_stored(done, dest, NAME, BODY, server)
    waited = subprocess.CompletedProcess(second.args, second.returncode, out2, err2)
    assert waited.returncode == 0, explain(waited, server)
    assert outcome_of(waited)["status"] == "unchanged"
    assert len(server.body_gets()) == 1  # the second run's HEAD came after the first finished
