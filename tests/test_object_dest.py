"""``--dest s3://BUCKET/PREFIX`` on a real SeaweedFS: streamed multipart uploads, checked, atomic.

The sources are real HTTP servers on 127.0.0.1 (tests/faults/server.py), the store a real
SeaweedFS behind a forwarding proxy that records every request (tests/seaweedfs.py).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import blake3
import httpx
import pytest

from ed_extractor.demo.generator import generate_dump
from ed_extractor.pipeline.eddn_stream import default_replica
from ed_extractor.services.file_transfer.base import LandedFile
from ed_extractor.services.s3.access import S3Access, S3Config
from ed_extractor.services.s3.bucket import Bucket
from ed_extractor.services.s3.location import S3Prefix
from ed_extractor.services.s3.upload import AHEAD_BYTES, MIN_PART, PARTS_IN_FLIGHT, ObjectStore
from tests.eddn_relay import Relay, journal
from tests.faults.conftest import gzip_dump, payload
from tests.faults.server import FaultServer, Plan, Version
from tests.seaweedfs import (
    READER_ACCESS_KEY,
    READER_SECRET_KEY,
    ProxyRules,
    SeaweedS3,
    s3_proxy,
    seaweedfs,
)
from tests.spansh_api import SpanshApi, serve_api
from tests.test_s3 import environment
from tests.test_shards import FILES, SHARDS, Mirror, files_of, shard_env
from tests.test_shards import mirror as mirror  # the counting mirror fixture
from tests.torrent_peers import LOOPBACK_ENV, magnet_of, make_torrent, seeding

if TYPE_CHECKING:
    from ed_extractor.hashing import PartSink

BUCKET = "landing"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs-dest")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def store(s3: SeaweedS3) -> Iterator[tuple[str, ProxyRules]]:
    """The proxy's endpoint in front of the store, and what it saw."""
    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as endpoint:
        yield endpoint, rules


@pytest.fixture
def sources() -> Iterator[list[FaultServer]]:
    started: list[FaultServer] = []
    yield started
    for server in started:
        server.stop()


def serve(sources: list[FaultServer], version: Version, plan: Plan | None = None) -> FaultServer:
    server = FaultServer(version, (lambda n, exchange: plan) if plan else ()).start()
    sources.append(server)
    return server


def run(endpoint: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``ed-extractor ARGS`` against the store at ``endpoint``, scratch under ``tmp_path``."""
    environ = environment(endpoint, ED_EXTRACTOR_SCRATCH=str(tmp_path / "scratch"), **env)
    return subprocess.run(
        [sys.executable, "-m", "ed_extractor", *args],
        capture_output=True, text=True, timeout=300, env=environ, check=False,
    )  # fmt: skip


def outcomes(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def stored(s3: SeaweedS3, key: str) -> tuple[bytes, dict[str, str]]:
    answer = s3.client().get_object(Bucket=BUCKET, Key=key)
    return answer["Body"].read(), answer["Metadata"]


def keys(s3: SeaweedS3, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def pending_uploads(s3: SeaweedS3) -> list[str]:
    answer = s3.client().list_multipart_uploads(Bucket=BUCKET)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def scratch_files(tmp_path: Path) -> list[str]:
    scratch = tmp_path / "scratch"
    return sorted(p.name for p in scratch.rglob("*") if p.is_file() and not p.name.startswith("."))


def parts_recorded(s3: SeaweedS3, prefix: str, name: str) -> int:
    """How many parts the upload state of ``name`` records (0: no state yet)."""
    key = f"{prefix}/_manifest/uploads/{name}.json"
    try:
        state = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except Exception:  # not written yet
        return 0
    return len(json.loads(state)["parts"])


def kill_once_parts_recorded(
    s3: SeaweedS3, environ: dict[str, str], args: list[str], prefix: str, name: str, *, parts: int
) -> None:
    """Run ``ed-extractor ARGS``; SIGKILL it once its upload state records ``parts`` parts."""
    killed = subprocess.Popen(
        [sys.executable, "-m", "ed_extractor", *args],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and parts_recorded(s3, prefix, name) < parts:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        killed.kill()


def data_writes(rules: ProxyRules) -> int:
    """PUTs and POSTs of data objects (the manifest's records under ``_manifest/`` left out)."""
    with rules.lock:
        return sum(
            1
            for _, what, _ in rules.requests
            if what.startswith(("PUT ", "POST ")) and "/_manifest/" not in what
        )


def expected_parts(size: int) -> int:
    return max(1, size // MIN_PART) if size > MIN_PART else 0


@pytest.mark.parametrize("connections", ["1", "4"])
def test_a_binary_file_and_a_gzip_dump_stream_into_objects_with_their_digests(
    connections: str, s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    endpoint, rules = store
    binary = payload(3 * MIN_PART + 12345, seed=5)
    dump, _ = gzip_dump(400_000, seed=6)
    files = {
        "galaxy.bin": serve(sources, Version(binary)),
        "galaxy.json.gz": serve(sources, Version(dump, content_type="application/gzip")),
    }
    prefix = f"nightly-{connections}"
    urls = [server.url(name) for name, server in files.items()]
    done = run(endpoint, tmp_path, "fetch", *urls, "--dest", f"s3://{BUCKET}/{prefix}/",
               "--json", "--connections", connections)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {line["name"]: line for line in outcomes(done)}
    for name, body in (("galaxy.bin", binary), ("galaxy.json.gz", dump)):
        data, metadata = stored(s3, f"{prefix}/{name}")
        assert data == body
        assert metadata["sha256"] == hashlib.sha256(body).hexdigest() == lines[name]["sha256"]
        assert metadata["blake3"] == blake3.blake3(body).hexdigest() == lines[name]["blake3"]
        assert metadata["source-url"] == files[name].url(name)
        assert metadata["source-etag"] == '"v1"'
        assert lines[name]["status"] == "downloaded"
        assert lines[name]["path"] == f"s3://{BUCKET}/{prefix}/{name}"
        parts = rules.count(f"PUT /{BUCKET}/{prefix}/_manifest/staging/{name}?partNumber=")
        assert parts == expected_parts(len(body)), rules.requests
    assert lines["galaxy.json.gz"]["regime"] == "gzip"
    assert pending_uploads(s3) == []
    dest = f"s3://{BUCKET}/{prefix}"
    listed = outcomes(run(endpoint, tmp_path, "manifest", "--dest", dest, "--json"))
    assert {(r["name"], r["path"], r["sha256"]) for r in listed} == {
        (name, line["path"], line["sha256"]) for name, line in lines.items()
    }
    for quick in ((), ("--quick",)):
        checked = run(endpoint, tmp_path, "verify", "--dest", dest, "--json", *quick)
        assert checked.returncode == 0, checked.stderr
        assert [r["status"] for r in outcomes(checked)] == ["ok", "ok"]
    assert scratch_files(tmp_path) == ["manifest.sqlite3"] or scratch_files(tmp_path) == []


def test_a_store_without_crc64_gets_parts_checked_by_content_md5_and_the_etag_of_their_md5s(
    s3: SeaweedS3, sources: list[FaultServer], tmp_path: Path
) -> None:
    rules = ProxyRules(refuse="x-amz-checksum-algorithm")  # CreateMultipartUpload with CRC-64
    body = payload(3 * MIN_PART + 4321, seed=11)
    source = serve(sources, Version(body))
    with s3_proxy(s3.endpoint, rules) as endpoint:
        done = run(endpoint, tmp_path, "fetch", source.url("md5.bin"), "--dest",
                   f"s3://{BUCKET}/no-crc64/", "--json", "--connections", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    staging = f"/{BUCKET}/no-crc64/_manifest/staging/md5.bin"
    assert rules.count(f"POST {staging}?uploads") == 2  # refused, then plain
    assert rules.count(f"PUT {staging}?partNumber=") == expected_parts(len(body))
    data, metadata = stored(s3, "no-crc64/md5.bin")
    assert data == body
    assert metadata["sha256"] == hashlib.sha256(body).hexdigest()
    head = s3.client().head_object(Bucket=BUCKET, Key="no-crc64/md5.bin")
    spans = ((0, MIN_PART), (MIN_PART, 2 * MIN_PART), (2 * MIN_PART, len(body)))  # tail rides
    part_md5s = b"".join(hashlib.md5(body[start:end]).digest() for start, end in spans)
    assert head["ETag"].strip('"') == f"{hashlib.md5(part_md5s).hexdigest()}-3"
    assert pending_uploads(s3) == []


class HashedSink:
    """A part sink whose every byte is already hashed (the download is done, not yet landed)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def hashed(self) -> int:
        return self.size


def test_a_file_all_sent_but_not_yet_landed_gets_no_empty_part(
    s3: SeaweedS3, store: tuple[str, ProxyRules], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, rules = store
    for name, value in environment(endpoint).items():
        monkeypatch.setenv(name, value)
    body = payload(2 * MIN_PART + 777, seed=12)
    part = tmp_path / "done.bin.part"
    part.write_bytes(body)
    with httpx.Client() as client:
        bucket = Bucket(S3Access(S3Config(endpoint_url=endpoint)), client, BUCKET)
        objects = ObjectStore(bucket, S3Prefix(BUCKET, "all-sent"), tmp_path)
        landing = objects.landing(tmp_path / "done.bin", {})
        landing.follow(cast("PartSink", HashedSink(len(body))), part, len(body))
        time.sleep(1.0)  # the pump has sent every part; land comes later, as after a slow check
        digest = hashlib.sha256(body).hexdigest()
        landing.land(part, LandedFile(tmp_path / "done.bin", len(body), digest, None))
    assert rules.count(f"PUT /{BUCKET}/all-sent/_manifest/staging/done.bin?partNumber=") == 2
    data, metadata = stored(s3, "all-sent/done.bin")
    assert (data, metadata["sha256"]) == (body, digest)


def test_parts_go_up_while_the_source_is_still_sending_and_the_scratch_stays_small(
    s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer], tmp_path: Path
) -> None:
    endpoint, rules = store
    size = 12 * MIN_PART
    body = payload(size, seed=7)
    source = serve(sources, Version(body), Plan(throttle=(256 << 10, 0.02)))  # ~12 MiB/s
    sent_at_first_part: list[int] = []

    def note_first_part(path: str) -> None:
        if "partNumber=1&" in path and not sent_at_first_part:
            sent_at_first_part.append(source.body_bytes())

    rules.before = note_first_part
    scratch = tmp_path / "scratch"
    most = [0]
    stop = threading.Event()

    def watch_scratch() -> None:  # the disk blocks the scratch folder's files hold
        while not stop.wait(0.02):
            held = sum(p.stat().st_blocks * 512 for p in scratch.rglob("*.part") if p.is_file())
            most[0] = max(most[0], held)

    watcher = threading.Thread(target=watch_scratch, daemon=True)
    watcher.start()
    try:
        done = run(endpoint, tmp_path, "fetch", source.url("big.bin"), "--dest",
                   f"s3://{BUCKET}/streamed", "--json", "--connections", "1")  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert done.returncode == 0, done.stderr
    assert stored(s3, "streamed/big.bin")[0] == body
    assert sent_at_first_part, "no part went up"
    assert sent_at_first_part[0] < size // 2, sent_at_first_part
    assert 0 < most[0] <= 10 * MIN_PART, f"the scratch held {most[0]} bytes of {size}"


@pytest.mark.parametrize("fault", ["corrupt-gzip", "sha256-mismatch"])
def test_a_failed_check_completes_nothing_leaves_no_upload_and_keeps_the_previous_object(
    fault: str, s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer],
    tmp_path: Path,
) -> None:  # fmt: skip
    endpoint, rules = store
    good, _ = gzip_dump(400_000, seed=8)
    name, key = "systems.json.gz", f"checked-{fault}/systems.json.gz"
    source = serve(sources, Version(good, content_type="application/gzip"))
    dest = f"s3://{BUCKET}/checked-{fault}"
    first = run(endpoint, tmp_path, "fetch", source.url(name), "--dest", dest, "--json")
    assert first.returncode == 0, first.stderr
    newer, _ = gzip_dump(400_000, seed=9)
    args = ["--expect-sha256", "0" * 64] if fault == "sha256-mismatch" else []
    if fault == "corrupt-gzip":
        newer = (
            newer[: len(newer) // 2]
            + bytes([newer[len(newer) // 2] ^ 0xFF])
            + newer[len(newer) // 2 + 1 :]
        )
    source.set_version(Version(newer, etag='"v2"', content_type="application/gzip"))
    done = run(endpoint, tmp_path, "fetch", source.url(name), "--dest", dest, "--json", *args)
    assert done.returncode == 1
    [line] = outcomes(done)
    assert line["status"] == "failed"
    assert "\n" not in line["error"]
    assert ("SHA-256 mismatch" in line["error"]) == (fault == "sha256-mismatch")
    staged = f"PUT /{BUCKET}/checked-{fault}/_manifest/staging/{name}?partNumber="
    assert rules.count(staged) >= 1  # parts did go up meanwhile
    assert stored(s3, key)[0] == good
    assert pending_uploads(s3) == []
    assert ".part" not in " ".join(scratch_files(tmp_path))


def test_an_unchanged_source_is_neither_downloaded_nor_uploaded_again(
    s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer], tmp_path: Path
) -> None:
    endpoint, rules = store
    body = payload(2 * MIN_PART + 1, seed=10)
    source = serve(sources, Version(body))
    dest = f"s3://{BUCKET}/unchanged"
    assert run(endpoint, tmp_path, "fetch", source.url("a.bin"), "--dest", dest).returncode == 0
    gets, writes = len(source.body_gets()), data_writes(rules)
    again = run(endpoint, tmp_path, "fetch", source.url("a.bin"), "--dest", dest, "--json")
    assert again.returncode == 0, again.stderr
    assert [line["status"] for line in outcomes(again)] == ["unchanged"]
    assert len(source.body_gets()) == gets
    assert data_writes(rules) == writes
    # The object replaced behind the manifest's back: the source is fetched and stored again.
    s3.client().put_object(Bucket=BUCKET, Key="unchanged/a.bin", Body=b"not it")
    third = run(endpoint, tmp_path, "fetch", source.url("a.bin"), "--dest", dest, "--json")
    assert [line["status"] for line in outcomes(third)] == ["downloaded"]
    assert stored(s3, "unchanged/a.bin")[0] == body


@pytest.mark.parametrize(
    ("name", "gzipped", "connections"),
    [("k.bin", False, "1"), ("k.json.gz", True, "1"), ("k4.bin", False, "4")],
)
def test_a_run_killed_mid_upload_goes_on_from_its_parts_and_fetches_only_the_rest(
    name: str, gzipped: bool, connections: str, s3: SeaweedS3, store: tuple[str, ProxyRules],
    sources: list[FaultServer], tmp_path: Path,
) -> None:  # fmt: skip
    endpoint, _rules = store
    body = gzip_dump(900_000, seed=11)[0] if gzipped else payload(6 * MIN_PART + 99, seed=11)
    kind = "application/gzip" if gzipped else "application/octet-stream"
    source = serve(sources, Version(body, content_type=kind), Plan(throttle=(256 << 10, 0.02)))
    dest = f"s3://{BUCKET}/killed-{name}"
    staging = f"killed-{name}/_manifest/staging/{name}"  # where the upload goes first
    environ = environment(endpoint, ED_EXTRACTOR_SCRATCH=str(tmp_path / "scratch"))
    fetch = ["fetch", source.url(name), "--dest", dest, "--connections", connections]
    kill_once_parts_recorded(s3, environ, fetch, f"killed-{name}", name, parts=2)
    assert pending_uploads(s3) == [staging]
    assert keys(s3, f"killed-{name}/{name}") == []  # nothing under the final name
    first_run = source.body_bytes()
    state = s3.client().get_object(
        Bucket=BUCKET, Key=f"killed-{name}/_manifest/uploads/{name}.json"
    )
    recorded = json.loads(state["Body"].read())["parts"][-1]
    kept = recorded["start"] + recorded["size"]  # what the second run need not fetch again
    done = run(endpoint, tmp_path, "fetch", source.url(name), "--dest", dest, "--json")
    assert done.returncode == 0, done.stderr
    [line] = outcomes(done)
    data, metadata = stored(s3, f"killed-{name}/{name}")
    assert data == body
    assert line["sha256"] == metadata["sha256"] == hashlib.sha256(body).hexdigest()
    assert metadata["blake3"] == blake3.blake3(body).hexdigest()
    assert line["regime"] == ("gzip" if gzipped else "binary")
    # The second run fetched the rest only; what the first fetched beyond the parts it recorded
    # is bounded by the upload: the parts in flight, two more and the reorder window ahead.
    second_run = source.body_bytes() - first_run  # (+ what work stealing cut off mid-chunk)
    assert len(body) - kept <= second_run <= len(body) - kept + (4 << 20), done.stderr
    lost = first_run - kept
    assert lost <= (PARTS_IN_FLIGHT + 2) * MIN_PART + AHEAD_BYTES + (4 << 20), lost
    assert pending_uploads(s3) == []
    assert keys(s3, f"killed-{name}/_manifest/staging/") == []
    assert keys(s3, f"killed-{name}/_manifest/uploads/") == []


def test_an_upload_of_a_source_that_changed_meanwhile_is_aborted_and_started_again(
    s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer], tmp_path: Path
) -> None:
    endpoint, _rules = store
    body = payload(5 * MIN_PART, seed=14)
    source = serve(sources, Version(body), Plan(throttle=(256 << 10, 0.02)))
    dest = f"s3://{BUCKET}/changed"
    environ = environment(endpoint, ED_EXTRACTOR_SCRATCH=str(tmp_path / "scratch"))
    fetch = ["fetch", source.url("c.bin"), "--dest", dest]
    kill_once_parts_recorded(s3, environ, fetch, "changed", "c.bin", parts=1)
    [left] = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix="changed/")["Uploads"]
    newer = payload(5 * MIN_PART, seed=15)
    source.set_version(Version(newer, etag='"v2"'))
    done = run(endpoint, tmp_path, "fetch", source.url("c.bin"), "--dest", dest, "--json")
    assert done.returncode == 0, done.stderr
    assert stored(s3, "changed/c.bin")[0] == newer
    uploads = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix="changed/")
    assert left["UploadId"] not in {u["UploadId"] for u in uploads.get("Uploads", [])}


def test_unfinished_uploads_older_than_the_limit_are_aborted_when_a_run_starts(
    s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer], tmp_path: Path
) -> None:
    endpoint, _ = store
    client = s3.client()
    old = client.create_multipart_upload(Bucket=BUCKET, Key="stale/forgotten.bin")["UploadId"]
    time.sleep(2.2)
    young = client.create_multipart_upload(Bucket=BUCKET, Key="stale/running.bin")["UploadId"]
    source = serve(sources, Version(payload(1000, seed=12)))
    done = run(endpoint, tmp_path, "fetch", source.url("x.bin"), "--dest", f"s3://{BUCKET}/stale",
               ED_EXTRACTOR_UPLOAD_MAX_AGE_S="2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    left = client.list_multipart_uploads(Bucket=BUCKET, Prefix="stale/").get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in left] == [("stale/running.bin", young)]
    assert old not in {u["UploadId"] for u in left}
    client.abort_multipart_upload(Bucket=BUCKET, Key="stale/running.bin", UploadId=young)


@pytest.mark.parametrize(
    ("dest", "env", "says"),
    [
        ("s3://no-such-bucket/x", {}, "does not exist"),
        (f"s3://{BUCKET}/x", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "denied"),
        (
            f"s3://{BUCKET}/x",
            {"AWS_ACCESS_KEY_ID": READER_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": READER_SECRET_KEY},
            "cannot write under",
        ),
        (f"s3://{BUCKET}/a/../b", {}, "'..'"),
        ("s3:///x", {}, "no bucket"),
    ],
)
def test_an_unusable_destination_is_one_line_exit_2_and_nothing_written(
    dest: str, env: dict[str, str], says: str, s3: SeaweedS3, store: tuple[str, ProxyRules],
    sources: list[FaultServer], tmp_path: Path,
) -> None:  # fmt: skip
    endpoint, rules = store
    source = serve(sources, Version(payload(1000, seed=13)))
    done = run(endpoint, tmp_path, "fetch", source.url("y.bin"), "--dest", dest, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert source.body_gets() == []
    assert data_writes(rules) == 0  # at most the refused write check under _manifest/
    assert keys(s3, "x/") == []


def test_api_dumps_land_as_objects(
    s3: SeaweedS3, store: tuple[str, ProxyRules], tmp_path: Path
) -> None:
    endpoint, _ = store
    with serve_api(SpanshApi()) as base:
        done = run(endpoint, tmp_path, "api", "dump", "7", "8", "--base-url", base,
                   "--dest", f"s3://{BUCKET}/api-run", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = outcomes(done)
    assert [line["name"] for line in lines] == ["api/dump/7.json", "api/dump/8.json"]
    for line in lines:
        data, metadata = stored(s3, f"api-run/{line['name']}")
        assert hashlib.sha256(data).hexdigest() == line["sha256"] == metadata["sha256"]
        assert line["path"] == f"s3://{BUCKET}/api-run/{line['name']}"
        assert json.loads(data)


def test_eddn_hour_files_land_as_objects_and_a_second_run_adds_to_the_hours_object(
    s3: SeaweedS3, store: tuple[str, ProxyRules], tmp_path: Path
) -> None:
    endpoint, _ = store
    environ = environment(endpoint, ED_EXTRACTOR_SCRATCH=str(tmp_path / "scratch"))
    dest = f"s3://{BUCKET}/eddn-run"
    hours = {time.strftime("%Y-%m-%dT%H", time.gmtime())}
    for n in (1, 2):
        relay = Relay()
        try:
            recorder = subprocess.Popen(
                [sys.executable, "-m", "ed_extractor", "eddn", "--endpoint", relay.endpoint,
                 "--dest", dest, "--duration", "3", "--json"],
                env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            relay.wait_for_subscriber(timeout_s=30)
            relay.send(journal(n))
            _, stderr = recorder.communicate(timeout=60)
        finally:
            relay.close()
        assert recorder.returncode == 0, stderr
    # an object store is not merged (eddn merge works on a folder): the replica's own objects
    found = keys(s3, f"eddn-run/eddn/_replicas/{default_replica()}/journal-1/")
    if hours != {time.strftime("%Y-%m-%dT%H", time.gmtime())}:
        pytest.skip("the hour turned between the two runs: each went to its own hour's object")
    [key] = found
    data, metadata = stored(s3, key)
    assert [json.loads(line) for line in gzip.decompress(data).splitlines()] == [
        journal(1),
        journal(2),
    ]
    assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    [record] = [r for r in outcomes(run(endpoint, tmp_path, "manifest", "--dest", dest, "--json"))
                if r["name"].startswith("eddn/")]  # fmt: skip
    assert record["path"] == f"s3://{BUCKET}/{key}"
    assert record["records"] == 2


# --- a run sharded over the pods of an Indexed Job, into one bucket prefix -------------------
# (``mirror``: the counting mirror fixture of tests/test_shards.py)


def sharded_run(
    endpoint: str, tmp_path: Path, base: str, index: int, dest: str
) -> subprocess.Popen[str]:
    config = tmp_path / "sources.toml"
    config.write_text("".join(f'[[source]]\nurl = "{base}/{name}"\n\n' for name in FILES))
    environ = environment(endpoint, ED_EXTRACTOR_SCRATCH=str(tmp_path / "scratch"),
                          **shard_env(index))  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "ed_extractor", "run", "--config", str(config), "--dest", dest,
         "--json"],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_three_shards_share_one_prefix_and_one_manifest_each_file_fetched_once(
    s3: SeaweedS3, store: tuple[str, ProxyRules], mirror: tuple[str, type[Mirror]],
    tmp_path: Path,
) -> None:  # fmt: skip
    endpoint, _ = store
    base, handler = mirror
    dest = f"s3://{BUCKET}/sharded"
    pods = [sharded_run(endpoint, tmp_path, base, index, dest) for index in range(SHARDS)]
    seen: list[str] = []
    for index, pod in enumerate(pods):
        stdout, stderr = pod.communicate(timeout=120)
        assert pod.returncode == 0, stderr
        lines = [json.loads(line) for line in stdout.splitlines()]
        assert {line["name"] for line in lines} == files_of(index)
        assert {line["shard"] for line in lines} == {f"{index}/{SHARDS}"}
        seen += [line["name"] for line in lines]
    assert sorted(seen) == sorted(FILES)
    assert handler.gets == Counter(dict.fromkeys(FILES, 1))  # one body GET per file, over all
    for name, body in FILES.items():
        assert stored(s3, f"sharded/{name}")[0] == body
    records = outcomes(run(endpoint, tmp_path, "manifest", "--dest", dest, "--json"))
    assert sorted(r["name"] for r in records) == sorted(FILES)  # no shard lost another's record

    # One shard killed mid-file, then rerun alone: it completes its files and nothing else.
    mine = sorted(files_of(1))
    handler.held.add(mine[-1])
    victim = f"s3://{BUCKET}/sharded-kill"
    pod = sharded_run(endpoint, tmp_path, base, 1, victim)
    assert handler.stalled.wait(timeout=60), "the shard never reached its last file"
    pod.send_signal(signal.SIGKILL)
    pod.communicate(timeout=30)
    before = Counter(handler.gets)
    handler.held.clear()
    rerun = sharded_run(endpoint, tmp_path, base, 1, victim)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    statuses = {line["name"]: line["status"] for line in map(json.loads, stdout.splitlines())}
    assert statuses == {**dict.fromkeys(mine[:-1], "unchanged"), mine[-1]: "downloaded"}
    assert set(handler.gets - before) == {mine[-1]}
    assert keys(s3, "sharded-kill/part-") == [f"sharded-kill/{name}" for name in mine]


def test_the_sources_files_dest_is_the_runs_unless_the_command_line_says_otherwise(
    s3: SeaweedS3, store: tuple[str, ProxyRules], sources: list[FaultServer], tmp_path: Path
) -> None:
    endpoint, _ = store
    source = serve(sources, Version(payload(5000, seed=16)))
    config = tmp_path / "sources.toml"
    config.write_text(f'[defaults]\ndest = "s3://{BUCKET}/from-defaults"\n\n'
                      f'[[source]]\nurl = "{source.url("d.bin")}"\n')  # fmt: skip
    done = run(endpoint, tmp_path, "run", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert [line["path"] for line in outcomes(done)] == [f"s3://{BUCKET}/from-defaults/d.bin"]
    other = run(endpoint, tmp_path, "run", "--config", str(config), "--json",
                "--dest", f"s3://{BUCKET}/from-cli")  # fmt: skip
    assert [line["path"] for line in outcomes(other)] == [f"s3://{BUCKET}/from-cli/d.bin"]
    assert keys(s3, "from-cli/d") == ["from-cli/d.bin"]


@pytest.mark.slow
def test_a_multi_file_torrent_lands_as_one_object_per_file_under_the_sources_folder(
    s3: SeaweedS3, store: tuple[str, ProxyRules], tmp_path: Path
) -> None:
    endpoint, _ = store
    content = tmp_path / "seed" / "dumps"
    (content / "daily").mkdir(parents=True)
    generate_dump(content / "daily" / "galaxy_1day.json.gz", systems=2000, seed=3,
                  populated=False, stations=False, workers=1)  # fmt: skip
    (content / "systems.json").write_text('[\n{"id64": 1},\n{"id64": 2}\n]\n')
    metainfo = make_torrent(content, "hybrid")
    dest = f"s3://{BUCKET}/torrent"
    with seeding(metainfo, content.parent) as seeder:
        env = {**LOOPBACK_ENV, "ED_EXTRACTOR_BT_PEERS": seeder.endpoint}
        args = ("fetch", magnet_of(metainfo), "--name", "spansh", "--dest", dest, "--json")
        first = run(endpoint, tmp_path, *args, **env)
        assert first.returncode == 0, first.stderr
        again = run(endpoint, tmp_path, *args, **env)
    assert again.returncode == 0, again.stderr
    assert [line["status"] for line in outcomes(again)] == ["unchanged"]
    assert keys(s3, "torrent/spansh/") == [
        "torrent/spansh/daily/galaxy_1day.json.gz",
        "torrent/spansh/systems.json",
    ]
    for relative in ("daily/galaxy_1day.json.gz", "systems.json"):
        data, metadata = stored(s3, f"torrent/spansh/{relative}")
        assert data == (content / relative).read_bytes()
        assert metadata["sha256"] == hashlib.sha256(data).hexdigest()
    records = outcomes(run(endpoint, tmp_path, "manifest", "--dest", dest, "--json"))
    assert {r["name"]: r["path"] for r in records} == {
        f"spansh/{relative}": f"s3://{BUCKET}/torrent/spansh/{relative}"
        for relative in ("daily/galaxy_1day.json.gz", "systems.json")
    }
    assert not [p for p in (tmp_path / "scratch").rglob("*") if p.is_file() and
                not p.name.startswith(".")]  # fmt: skip
