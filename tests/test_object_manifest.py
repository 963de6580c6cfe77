"""The manifest in the object store, and `manifest`/`verify --dest s3://`, on a real SeaweedFS."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ed_extractor.errors import DestinationError, UsageError
from ed_extractor.hashing import Blake3
from ed_extractor.manifest import ManifestRecord, ManifestStore
from ed_extractor.manifest.object_store import ObjectManifestStore
from ed_extractor.pipeline.session import open_manifest
from ed_extractor.services.s3.access import S3Access, S3Config, S3Error
from ed_extractor.services.s3.bucket import Bucket, ObjectTooLargeError
from ed_extractor.services.s3.location import S3Prefix
from ed_extractor.settings import Settings
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, ProxyRules, SeaweedS3, s3_proxy, seaweedfs
from tests.test_s3 import cli, environment, payload

BUCKET = "landing"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test identity in the AWS chain of this process, and nothing from the host."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture
def prefix() -> S3Prefix:
    """A prefix of the test's own in the shared bucket."""
    return S3Prefix(BUCKET, f"runs/{uuid.uuid4().hex[:10]}")


def open_store(s3: SeaweedS3, client: httpx.Client, prefix: S3Prefix) -> ObjectManifestStore:
    access = S3Access(S3Config(endpoint_url=s3.endpoint))
    return ObjectManifestStore(Bucket(access, client, BUCKET), prefix)


@pytest.fixture
def store(s3: SeaweedS3, credentials: None, prefix: S3Prefix) -> Iterator[ObjectManifestStore]:
    with httpx.Client() as client, open_store(s3, client, prefix) as opened:
        yield opened


def record_of(prefix: S3Prefix, name: str, body: bytes, **changes: Any) -> ManifestRecord:
    blake3 = Blake3()
    blake3.update(body)
    fields: dict[str, Any] = {
        "name": name,
        "url": f"https://mirror.invalid/{name}",
        "final_url": f"https://mirror.invalid/{name}",
        "path": f"s3://{prefix.bucket}/{prefix.key(name)}",
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "blake3": blake3.hexdigest(),
        "regime": "binary",
        "mime_type": "application/octet-stream",
        "etag": f'"{hashlib.md5(body).hexdigest()}"',
        "downloaded_at": datetime.now(UTC),
    }
    return ManifestRecord(**{**fields, **changes})


def land(s3: SeaweedS3, store: ObjectManifestStore, name: str, body: bytes) -> ManifestRecord:
    """Put ``body`` as the upload will (metadata sha256, blake3, source-url), then record it."""
    record = record_of(store.prefix, name, body)
    metadata = {"sha256": record.sha256, "blake3": record.blake3 or "", "source-url": record.url}
    s3.client().put_object(
        Bucket=BUCKET, Key=store.prefix.key(name), Body=body, Metadata=metadata,
        ChecksumAlgorithm="CRC64NVME",
    )  # fmt: skip
    store.put(record, elapsed_s=0.5, bytes_transferred=len(body))
    return record


def replace_body(s3: SeaweedS3, key: str, body: bytes) -> None:
    """Overwrite the object's bytes, keeping its user metadata (what a stray writer might do)."""
    client = s3.client()
    metadata = client.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata)


def keys_under(s3: SeaweedS3, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# --- the bucket --------------------------------------------------------------------------------


def test_the_bucket_puts_heads_gets_streams_lists_and_deletes(
    s3: SeaweedS3, credentials: None, prefix: S3Prefix
) -> None:
    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy, httpx.Client() as client:
        bucket = Bucket(S3Access(S3Config(endpoint_url=proxy)), client, BUCKET)
        direct = Bucket(S3Access(S3Config(endpoint_url=s3.endpoint)), client, BUCKET)  # PUTs
        body = payload(5 << 20, seed=5)
        etag = direct.put(prefix.key("big.bin"), body, content_type="application/octet-stream",
                          metadata={"sha256": hashlib.sha256(body).hexdigest()})  # fmt: skip
        head = bucket.head(prefix.key("big.bin"))
        assert head is not None
        assert (head.size, head.etag) == (len(body), etag)
        assert etag.strip('"') == hashlib.md5(body).hexdigest()
        assert head.metadata == {"sha256": hashlib.sha256(body).hexdigest()}
        assert bucket.head(prefix.key("absent.bin")) is None
        chunks = list(bucket.stream(prefix.key("big.bin")))
        assert b"".join(chunks) == body
        assert max(map(len, chunks)) <= 4 << 20
        with pytest.raises(ObjectTooLargeError):
            bucket.get(prefix.key("big.bin"))
        with pytest.raises(S3Error) as absent:
            bucket.get(prefix.key("absent.bin"))
        assert (absent.value.code, absent.value.status_code) == ("NoSuchKey", 404)

        names = [f"list/{i}.json" for i in range(5)]
        for name in names:
            direct.put(prefix.key(name), b"{}", content_type="application/json")
        mark = len(rules.seen)
        listed = list(bucket.list(prefix.key("list/"), page_size=2))
        assert [item.key for item in listed] == [prefix.key(name) for name in names]
        assert [item.size for item in listed] == [2] * 5
        pages = [seen for seen in rules.seen[mark:] if "list-type=2" in seen]
        assert len(pages) == 3
        assert "continuation-token=" in pages[1]
        direct.delete(prefix.key("list/0.json"))
        direct.delete(prefix.key("list/0.json"))  # already gone: not an error
        assert len(list(bucket.list(prefix.key("list/")))) == 4


# --- the records -----------------------------------------------------------------------------


def test_a_record_is_one_json_object_readable_without_this_program(
    s3: SeaweedS3, store: ObjectManifestStore
) -> None:
    record = land(s3, store, "galaxy.json.gz", b"the galaxy")
    key = f"{store.prefix.key('_manifest/files/galaxy.json.gz.json')}"
    body = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body.endswith(b"\n")
    assert body.count(b"\n") == 1  # one JSON line, as read_json_auto reads it
    document = json.loads(body)
    assert document["name"] == "galaxy.json.gz"
    assert document["path"] == f"s3://{BUCKET}/{store.prefix.prefix}/galaxy.json.gz"
    assert document["sha256"] == record.sha256
    assert document["stored_object"]["etag"].strip('"')  # the object's ETag when recorded
    everything = keys_under(s3, f"{store.prefix.prefix}/_manifest/")
    assert not any(":" in key for key in everything)  # Hadoop paths refuse ':'
    assert [key.split("/")[3] for key in everything] == ["attempts", "files"]


def test_put_get_records_and_history_round_trip(s3: SeaweedS3, store: ObjectManifestStore) -> None:
    first = land(s3, store, "systems.json.gz", b"systems")
    second = land(s3, store, "api/dump/42.json", b'{"id64": 42}')  # a name with folders
    assert store.get("systems.json.gz") == first
    assert store.get("api/dump/42.json") == second
    assert store.get("never-stored.bin") is None
    assert store.records() == [second, first]  # by name
    assert store.with_etag(first.etag or "") == [first]
    assert store.with_etag('"no-such-etag"') == []

    store.record_attempt("systems.json.gz", first.url, "unchanged", elapsed_s=0.1)
    store.record_attempt("systems.json.gz", first.url, "failed", error="HTTP 503", elapsed_s=0.2)
    history = store.history("systems.json.gz")
    assert [a.status for a in history] == ["failed", "unchanged", "downloaded"]  # newest first
    assert history[0].error == "HTTP 503"
    assert history[2].bytes_transferred == len(b"systems")
    assert [a.name for a in store.history("api/dump/42.json")] == ["api/dump/42.json"]
    assert len(store.history()) == 4
    assert [a.status for a in store.history(limit=2)] == ["failed", "unchanged"]
    assert store.history("api") == []  # a folder of names is not a name

    store.record_verification("systems.json.gz", "ok", "blake3", bytes_found=7, elapsed_s=0.01)
    [check] = store.verifications("systems.json.gz")
    assert (check.status, check.algo, check.bytes) == ("ok", "blake3", 7)
    assert store.verifications("api/dump/42.json") == []


def test_a_put_replaces_only_its_own_record(s3: SeaweedS3, store: ObjectManifestStore) -> None:
    kept = land(s3, store, "a.bin", b"a")
    land(s3, store, "b.bin", b"b")
    newer = land(s3, store, "b.bin", b"b, version 2")
    assert store.records() == [kept, newer]
    assert [a.status for a in store.history("b.bin")] == ["downloaded", "downloaded"]


def test_concurrent_writers_of_one_prefix_never_lose_each_others_records(
    s3: SeaweedS3, credentials: None, prefix: S3Prefix
) -> None:
    """Two writers (the pods of an Indexed Job), each with its own store, at the same time."""
    names = {writer: [f"shard{writer}/file{i}.bin" for i in range(12)] for writer in (0, 1)}
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            with httpx.Client() as client, open_store(s3, client, prefix) as own:
                start.wait()
                for name in names[writer]:
                    own.put(record_of(prefix, name, name.encode()), elapsed_s=0.1,
                            bytes_transferred=1)  # fmt: skip
                    own.record_attempt(name, "https://mirror.invalid/", "unchanged", elapsed_s=0)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    with httpx.Client() as client:
        reader = open_store(s3, client, prefix)
        assert [r.name for r in reader.records()] == sorted(names[0] + names[1])
        assert len(reader.history(limit=None)) == 2 * 24


def test_a_corrupt_record_object_is_skipped_with_a_warning(
    s3: SeaweedS3, store: ObjectManifestStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = land(s3, store, "good.bin", b"good")
    files = store.prefix.key("_manifest/files")
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"{files}/truncated.bin.json", Body=b'{"name": "tru')
    client.put_object(Bucket=BUCKET, Key=f"{files}/list.bin.json", Body=b"[1, 2]")
    wrong = record_of(store.prefix, "other.bin", b"x").model_dump_json().encode()
    client.put_object(Bucket=BUCKET, Key=f"{files}/misplaced.bin.json", Body=wrong)
    huge = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    client.put_object(Bucket=BUCKET, Key=f"{files}/huge.bin.json", Body=huge)
    attempts = store.prefix.key("_manifest/attempts/good.bin")
    client.put_object(Bucket=BUCKET, Key=f"{attempts}/99991231T000000.000000Z-x.json", Body=b"{")
    with caplog.at_level(logging.WARNING, logger="ed_extractor.manifest.object_store"):
        assert store.records() == [good]
        assert store.get("truncated.bin") is None
        assert store.get("misplaced.bin") is None  # it records other.bin
        assert [a.status for a in store.history("good.bin")] == ["downloaded"]
    warned = [getattr(r, "url", "") for r in caplog.records if r.levelno == logging.WARNING]
    for name in ("truncated.bin", "list.bin", "misplaced.bin", "huge.bin"):
        assert f"s3://{BUCKET}/{files}/{name}.json" in warned
    assert any("/_manifest/attempts/good.bin/9999" in url for url in warned)


def test_a_record_path_is_an_absolute_path_or_an_s3_url() -> None:
    prefix = S3Prefix(BUCKET, "p")
    assert record_of(prefix, "a.bin", b"a").path == f"s3://{BUCKET}/p/a.bin"
    assert record_of(prefix, "a.bin", b"a", path="/data/a.bin").path == "/data/a.bin"
    for bad in ("relative/a.bin", f"s3://{BUCKET}", f"s3://{BUCKET}/folder/", "s3://x/a.bin"):
        with pytest.raises(ValidationError):
            record_of(prefix, "a.bin", b"a", path=bad)


def test_open_manifest_gives_sqlite_for_a_folder_and_objects_for_a_bucket(
    s3: SeaweedS3, credentials: None, tmp_path: Path
) -> None:
    with httpx.Client() as client:
        local = open_manifest(Settings(dest=tmp_path), client)
        with local:
            assert isinstance(local, ManifestStore)
        s3_settings = Settings(dest=f"s3://{BUCKET}/runs/open", s3_endpoint_url=s3.endpoint)
        objects = open_manifest(s3_settings, client)
        assert isinstance(objects, ObjectManifestStore)
        assert objects.url == f"s3://{BUCKET}/runs/open/_manifest/"
        missing = Settings(dest="s3://no-such-bucket/x", s3_endpoint_url=s3.endpoint)
        with pytest.raises(DestinationError, match="bucket no-such-bucket does not exist"):
            open_manifest(missing, client)
        with pytest.raises(UsageError, match="--manifest"):
            open_manifest(s3_settings.model_copy(update={"manifest": tmp_path / "m"}), client)


# --- manifest and verify on the command line ---------------------------------------------------


def run_json(env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = cli(env, *args, "--json")
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_manifest_lists_the_records_of_the_store(s3: SeaweedS3, store: ObjectManifestStore) -> None:
    first = land(s3, store, "galaxy_1day.json.gz", b"one day")
    second = land(s3, store, "galaxy_7days.json.gz", b"seven days")
    code, lines, stderr = run_json(environment(s3.endpoint), "manifest", "--dest", store.prefix.url)
    assert code == 0, stderr
    assert [ManifestRecord.model_validate(line) for line in lines] == [first, second]
    empty = f"s3://{BUCKET}/runs/never-written"
    done = cli(environment(s3.endpoint), "manifest", "--dest", empty)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ed-extractor: error: no manifest at {empty}/_manifest/"
    ]


@pytest.fixture
def four_objects(s3: SeaweedS3, store: ObjectManifestStore) -> dict[str, ManifestRecord]:
    """Four recorded objects, three of them changed since.

    ok.bin intact; mismatch.bin's bytes replaced (same size, metadata kept); missing.bin
    deleted; size-mismatch.bin replaced by a longer body (metadata kept).
    """
    records = {
        name: land(s3, store, name, payload(300_000 + i, seed=i))
        for i, name in enumerate(("ok.bin", "mismatch.bin", "missing.bin", "size-mismatch.bin"))
    }
    replace_body(s3, store.prefix.key("mismatch.bin"), payload(300_001, seed=99))
    s3.client().delete_object(Bucket=BUCKET, Key=store.prefix.key("missing.bin"))
    replace_body(s3, store.prefix.key("size-mismatch.bin"), payload(400_000, seed=3))
    return records


def test_verify_rehashes_every_object(
    s3: SeaweedS3, store: ObjectManifestStore, four_objects: dict[str, ManifestRecord]
) -> None:
    env = environment(s3.endpoint)
    code, lines, stderr = run_json(env, "verify", "--dest", store.prefix.url, "--record")
    assert code == 1, stderr
    found = {line["name"]: (line["status"], line["algo"], line["bytes"]) for line in lines}
    assert found == {
        "missing.bin": ("missing", "blake3", 0),
        "mismatch.bin": ("mismatch", "blake3", 300_001),
        "ok.bin": ("ok", "blake3", 300_000),
        "size-mismatch.bin": ("size-mismatch", "blake3", 400_000),
    }
    assert set(lines[0]) == {"name", "path", "status", "algo", "bytes", "elapsed_s"}
    assert lines[0]["path"] == four_objects[lines[0]["name"]].path
    assert [v.status for v in store.verifications("mismatch.bin")] == ["mismatch"]  # --record
    code, lines, _ = run_json(env, "verify", "--dest", store.prefix.url, "--only", "ok.bin",
                              "--algo", "sha256")  # fmt: skip
    assert (code, [(line["status"], line["algo"]) for line in lines]) == (0, [("ok", "sha256")])


def test_verify_quick_reads_no_body_and_still_catches_a_replaced_object(
    s3: SeaweedS3, store: ObjectManifestStore, four_objects: dict[str, ManifestRecord]
) -> None:
    s3.client().copy_object(  # same bytes, other sha256 metadata
        Bucket=BUCKET, Key=store.prefix.key("metadata.bin"),
        CopySource={"Bucket": BUCKET, "Key": store.prefix.key("ok.bin")},
        MetadataDirective="REPLACE", Metadata={"sha256": "0" * 64},
    )  # fmt: skip
    store.put(four_objects["ok.bin"].model_copy(update={
        "name": "metadata.bin", "path": f"s3://{BUCKET}/{store.prefix.key('metadata.bin')}",
    }), elapsed_s=0.1, bytes_transferred=0)  # fmt: skip
    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy:
        code, lines, stderr = run_json(environment(proxy), "verify", "--dest", store.prefix.url,
                                       "--quick")  # fmt: skip
    assert code == 1, stderr
    assert {line["name"]: line["status"] for line in lines} == {
        "metadata.bin": "mismatch",
        "mismatch.bin": "mismatch",  # same size and metadata: the store's ETag and CRC differ
        "missing.bin": "missing",
        "ok.bin": "ok",
        "size-mismatch.bin": "size-mismatch",
    }
    bodies = [seen for seen in rules.seen if seen.startswith("GET") and "/_manifest/" not in seen]
    assert [seen for seen in bodies if "list-type" not in seen] == []  # listings only


@pytest.mark.parametrize("command", ["manifest", "verify"])
def test_a_missing_bucket_or_wrong_credentials_are_one_line_and_exit_2(
    s3: SeaweedS3, command: str
) -> None:
    cases = [
        ("s3://no-such-bucket/runs", {}, "bucket no-such-bucket does not exist"),
        (f"s3://{BUCKET}/runs", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "access denied to bucket"),
        (f"s3://{BUCKET}/runs", {"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN"}, "access denied to bucket"),
    ]
    for dest, extra, message in cases:
        done = cli(environment(s3.endpoint, **extra), command, "--dest", dest)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("ed-extractor: error: ")
        assert message in line
        assert done.stdout == ""


def test_verify_quick_is_for_an_object_store(tmp_path: Path) -> None:
    done = cli(environment("http://127.0.0.1:9"), "verify", "--dest", str(tmp_path), "--quick")
    assert done.returncode == 2
    assert "--quick is for an s3:// destination" in done.stderr
