"""s3:// sources on a real SeaweedFS: exact bytes, S3 checksums, unchanged, resume, errors."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ed_extractor.errors import InvalidURLError
from ed_extractor.services.s3.location import parse_s3_url
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, ProxyRules, SeaweedS3, s3_proxy, seaweedfs

BUCKET = "dumps"
PART = 5 << 20  # S3's smallest part


def payload(size: int, seed: int) -> bytes:
    """Incompressible, reproducible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(autouse=True)
def downloads_removed_after(tmp_path: Path) -> Iterator[None]:
    """What a test downloaded (up to 30 MB) is deleted when it ends."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


def upload(
    server: SeaweedS3, key: str, body: bytes, *, parts: bool, crc64: bool = True, part: int = PART
) -> str:
    """Put ``body`` at ``key``: a multipart upload of ``part``-byte parts, or one PUT; its ETag."""
    from boto3.s3.transfer import TransferConfig

    client = server.client(checksums=crc64)
    extra = {"ChecksumAlgorithm": "CRC64NVME"} if crc64 else {}
    if parts:
        config = TransferConfig(multipart_threshold=part, multipart_chunksize=part)
        client.upload_fileobj(io.BytesIO(body), BUCKET, key, Config=config, ExtraArgs=extra)
    else:
        client.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
    return str(client.head_object(Bucket=BUCKET, Key=key)["ETag"])


def environment(endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of a run against ``endpoint``: test credentials, nothing from the host."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "ED_EXTRACTOR_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        AWS_EC2_METADATA_DISABLED="true",
        ED_EXTRACTOR_S3_ENDPOINT_URL=endpoint,
        ED_EXTRACTOR_RETRY_ATTEMPTS="1",
        ED_EXTRACTOR_LOG_FORMAT="text",
    )
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ed_extractor", *args],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip


def fetch(env: dict[str, str], dest: Path, *urls: str) -> tuple[int, list[dict[str, Any]], str]:
    done = cli(env, "fetch", *urls, "--dest", str(dest), "--json")
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def kill_fetch_when(env: dict[str, str], url: str, dest: Path, reached: Callable[[], bool]) -> None:
    """Start ``fetch url``; SIGKILL it as soon as ``reached()`` (or after a minute)."""
    run = subprocess.Popen(
        [sys.executable, "-m", "ed_extractor", "fetch", url, "--dest", str(dest)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not reached():
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        run.kill()


def only_final_files(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name != "manifest.sqlite3" and
                  not p.name.startswith("."))  # fmt: skip


@pytest.mark.parametrize(
    ("parts", "crc64", "size", "connections"),
    [
        pytest.param(True, True, 3 * PART + 12345, "1", id="multipart-crc64nvme"),
        pytest.param(True, True, 5 * PART + 12345, "8", id="multipart-crc64nvme-8-connections"),
        pytest.param(True, False, 2 * PART + 1, "1", id="multipart-no-checksum"),
        pytest.param(False, True, 20 << 20, "1", id="single-put-crc64nvme-ranges"),
        pytest.param(False, True, 20 << 20, "8", id="single-put-crc64nvme-8-connections"),
        pytest.param(False, False, 4096, "8", id="single-put-small"),
    ],
)
def test_an_object_is_stored_byte_for_byte_and_recorded_as_s3_multipart(
    s3: SeaweedS3, tmp_path: Path, parts: bool, crc64: bool, size: int, connections: str
) -> None:
    body = payload(size, seed=size)
    key = f"exact/{size}/{connections}/object.bin"
    etag = upload(s3, key, body, parts=parts, crc64=crc64)
    env = environment(s3.endpoint, ED_EXTRACTOR_CONNECTIONS=connections)
    code, [line], stderr = fetch(env, tmp_path, f"s3://{BUCKET}/{key}")
    assert code == 0, stderr
    assert line["status"] == "downloaded"
    assert line["regime"] == "s3-multipart"
    assert line["etag"] == etag
    assert line["sha256"] == hashlib.sha256(body).hexdigest()
    assert (tmp_path / "object.bin").read_bytes() == body
    assert only_final_files(tmp_path) == ["object.bin"]


def test_an_unchanged_object_is_not_downloaded_again_but_the_server_is_asked(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    body = payload(2 * PART + 7, seed=3)
    upload(s3, "unchanged/galaxy.bin", body, parts=True)
    url = f"s3://{BUCKET}/unchanged/galaxy.bin"
    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy:
        env = environment(proxy)
        assert fetch(env, tmp_path, url)[0] == 0
        mark = len(rules.seen)
        code, [line], _ = fetch(env, tmp_path, url)
        assert (code, line["status"]) == (0, "unchanged")
        assert [seen.split(" ")[0] for seen in rules.seen[mark:]] == ["HEAD"]  # no body sent
        code, [line], _ = fetch({**env, "AWS_SECRET_ACCESS_KEY": "wrong"}, tmp_path, url)
    assert code == 1
    assert line["status"] == "failed"
    assert "SignatureDoesNotMatch" in line["error"]
    assert (tmp_path / "galaxy.bin").read_bytes() == body


@pytest.mark.parametrize(
    ("parts", "size", "before_body"),
    [
        pytest.param(False, 2 << 20, ["HEAD {path}", "GET {path} bytes=0-1023"], id="single-part"),
        pytest.param(
            True,
            2 * PART + 5,
            ["HEAD {path}", "GET {path} bytes=0-1023", "HEAD {path}?partNumber=1"],
            id="multipart",
        ),
    ],
)
def test_an_object_costs_one_head_and_the_sample_before_its_body(
    s3: SeaweedS3, tmp_path: Path, parts: bool, size: int, before_body: list[str]
) -> None:
    """The probe's HEAD describes the object for the download; only a multipart ETag adds one."""
    body = payload(size, seed=size + 1)
    key = f"requests/{size}/galaxy.bin"
    upload(s3, key, body, parts=parts)
    path = f"/{BUCKET}/{key}"
    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy:
        code, [line], stderr = fetch(environment(proxy), tmp_path, f"s3://{BUCKET}/{key}")
    assert (code, line["status"]) == (0, "downloaded"), stderr
    assert (tmp_path / "galaxy.bin").read_bytes() == body
    bodies = (
        [f"GET {path}?partNumber={n}" for n in (1, 2, 3)] if parts
        else [f"GET {path} bytes=0-{size - 1}"]
    )  # fmt: skip
    assert rules.seen == [seen.format(path=path) for seen in before_body] + bodies
    assert len(before_body) == (3 if parts else 2)


def test_an_object_replaced_between_probe_and_download_is_described_again(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    old, new = payload(3 * PART, seed=11), payload(2 * PART + 9, seed=12)
    key = "requests/replaced/galaxy.bin"
    upload(s3, key, old, parts=True)
    path = f"/{BUCKET}/{key}"
    replaced: list[str] = []

    def replace_at_the_sample(asked: str) -> None:
        if asked == path and len(rules.seen) == 2 and not replaced:  # the sample's GET
            replaced.append(upload(s3, key, new, parts=True))

    rules = ProxyRules(before=replace_at_the_sample)
    with s3_proxy(s3.endpoint, rules) as proxy:
        code, [line], stderr = fetch(environment(proxy), tmp_path, f"s3://{BUCKET}/{key}")
    assert code == 0, stderr
    assert line["etag"] == replaced[0]
    assert (tmp_path / "galaxy.bin").read_bytes() == new
    assert rules.seen == [
        f"HEAD {path}",
        f"GET {path} bytes=0-1023",
        f"HEAD {path}?partNumber=1",  # If-Match the old ETag: 412
        f"HEAD {path}",
        f"HEAD {path}?partNumber=1",
        f"GET {path}?partNumber=1",
        f"GET {path}?partNumber=2",
        f"GET {path}?partNumber=3",
    ]


@pytest.mark.parametrize("connections", ["1", "8"])
def test_a_corrupted_part_fails_the_multipart_etag_and_the_good_file_stays(
    s3: SeaweedS3, tmp_path: Path, connections: str
) -> None:
    url = f"s3://{BUCKET}/corrupt/{connections}/galaxy.bin"
    good = payload(3 * PART, seed=4)
    upload(s3, f"corrupt/{connections}/galaxy.bin", good, parts=True, crc64=False)
    assert fetch(environment(s3.endpoint), tmp_path, url)[0] == 0
    upload(
        s3, f"corrupt/{connections}/galaxy.bin", payload(3 * PART, seed=5), parts=True, crc64=False
    )
    with s3_proxy(s3.endpoint, ProxyRules(corrupt="partNumber=2")) as proxy:
        env = environment(proxy, ED_EXTRACTOR_CONNECTIONS=connections)
        code, [line], _ = fetch(env, tmp_path, url)
    assert code == 1
    assert "multipart ETag mismatch" in line["error"]
    assert (tmp_path / "galaxy.bin").read_bytes() == good
    assert only_final_files(tmp_path) == ["galaxy.bin"]


def test_a_corrupted_range_fails_the_full_object_crc64nvme(s3: SeaweedS3, tmp_path: Path) -> None:
    upload(s3, "crc/single.bin", payload(9 << 20, seed=6), parts=False, crc64=True)
    with s3_proxy(s3.endpoint, ProxyRules(corrupt="single.bin")) as proxy:
        code, [line], _ = fetch(environment(proxy), tmp_path, f"s3://{BUCKET}/crc/single.bin")
    assert code == 1
    assert "CRC64NVME mismatch" in line["error"]
    assert only_final_files(tmp_path) == []


@pytest.mark.parametrize("connections", ["1", "8"])
def test_an_object_replaced_mid_download_is_fetched_again_whole(
    s3: SeaweedS3, tmp_path: Path, connections: str
) -> None:
    old, new = payload(3 * PART, seed=7), payload(2 * PART + 3, seed=8)
    key = f"replaced/{connections}/galaxy.bin"
    upload(s3, key, old, parts=True)
    replaced: list[str] = []

    def replace_once(path: str) -> None:
        if "partNumber=2" in path and not replaced:
            replaced.append(upload(s3, key, new, parts=True))

    rules = ProxyRules(before=replace_once)
    with s3_proxy(s3.endpoint, rules) as proxy:
        env = environment(proxy, ED_EXTRACTOR_CONNECTIONS=connections)
        code, [line], stderr = fetch(env, tmp_path, f"s3://{BUCKET}/{key}")
    assert code == 0, stderr
    assert "object replaced during the download; starting over" in stderr
    assert line["etag"] == replaced[0]
    assert (tmp_path / "galaxy.bin").read_bytes() == new


def test_a_run_killed_mid_download_resumes_where_its_bytes_stop(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    body = payload(4 * PART, seed=9)
    etag = upload(s3, "killed/galaxy.bin", body, parts=True)
    url = f"s3://{BUCKET}/killed/galaxy.bin"
    part = tmp_path / "galaxy.bin.part"
    with s3_proxy(s3.endpoint, ProxyRules(slow=("partNumber=3", 0.3))) as proxy:
        kill_fetch_when(
            environment(proxy),
            url,
            tmp_path,
            lambda: part.exists() and part.stat().st_size > 2 * PART + (256 << 10),
        )
    on_disk = part.stat().st_size
    assert 2 * PART < on_disk < 3 * PART  # killed inside part 3
    assert part.read_bytes() == body[:on_disk]
    sidecar = json.loads((tmp_path / "galaxy.bin.part.resume").read_text())
    assert (sidecar["validator"], sidecar["total"]) == (etag, len(body))
    assert not (tmp_path / "galaxy.bin").exists()

    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy:
        code, [line], stderr = fetch(environment(proxy), tmp_path, url)
    assert code == 0, stderr
    gets = [seen for seen in rules.seen if seen.startswith("GET") and "bytes=0-" not in seen]
    path = f"/{BUCKET}/killed/galaxy.bin"
    # the rest of part 3 by Range, then part 4; parts 1 and 2 are never asked for again
    assert gets == [f"GET {path} bytes={on_disk}-{3 * PART - 1}", f"GET {path}?partNumber=4"]
    assert (tmp_path / "galaxy.bin").read_bytes() == body
    assert line["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_run_over_8_connections_killed_resumes_each_part_where_it_stopped(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    body = payload(6 * PART, seed=10)
    etag = upload(s3, "killed8/galaxy.bin", body, parts=True)
    url = f"s3://{BUCKET}/killed8/galaxy.bin"
    sidecar = tmp_path / "galaxy.bin.part.resume"
    env = {"ED_EXTRACTOR_CONNECTIONS": "8"}

    def two_parts_written() -> bool:
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(sidecar.read_text())
            return bool(sum(done - start for start, done, _ in state["segments"]) >= 2 * PART)
        return False

    with s3_proxy(s3.endpoint, ProxyRules(slow=("partNumber=", 0.2))) as proxy:
        kill_fetch_when(environment(proxy, **env), url, tmp_path, two_parts_written)
    state = json.loads(sidecar.read_text())
    assert (state["validator"], state["total"]) == (etag, len(body))
    segments = [tuple(segment) for segment in state["segments"]]
    assert [(start, end) for start, _, end in segments] == [
        (n * PART, (n + 1) * PART) for n in range(6)
    ]  # one range per uploaded part
    kept = sum(done - start for start, done, _ in segments)
    assert kept >= 2 * PART

    rules = ProxyRules()
    with s3_proxy(s3.endpoint, rules) as proxy:
        code, [line], stderr = fetch(environment(proxy, **env), tmp_path, url)
    assert code == 0, stderr
    gets = sorted(
        seen for seen in rules.seen if seen.startswith("GET") and "bytes=0-1023" not in seen
    )
    path = f"/{BUCKET}/killed8/galaxy.bin"
    expected = sorted(
        f"GET {path}?partNumber={n + 1}" if done == start else f"GET {path} bytes={done}-{end - 1}"
        for n, (start, done, end) in enumerate(segments)
        if done < end
    )
    assert gets == expected  # every range goes on where its bytes stopped; complete ones rest
    assert (tmp_path / "galaxy.bin").read_bytes() == body
    assert line["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        (f"s3://{BUCKET}/missing/key.bin", {}, "not found: NoSuchKey: "),
        ("s3://no-such-bucket/key.bin", {}, "not found: NoSuchBucket: "),
        (f"s3://{BUCKET}/errors/ok.bin", {"AWS_SECRET_ACCESS_KEY": "wrong"},
         "access denied: SignatureDoesNotMatch: "),
        (f"s3://{BUCKET}/errors/ok.bin", {"AWS_ACCESS_KEY_ID": "AKIDUNKNOWN"},
         "access denied: InvalidAccessKeyId: "),
        (f"s3://{BUCKET}/errors/ok.bin", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
         "no AWS credentials found"),
        (f"s3://{BUCKET}/errors/ok.bin", {"ED_EXTRACTOR_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
         "cannot connect"),
        (f"s3://{BUCKET}/errors/ok.bin", {"ED_EXTRACTOR_S3_ANONYMOUS": "1"},
         "access denied: AccessDenied"),
    ],
    ids=["no-such-key", "no-such-bucket", "wrong-secret", "unknown-key", "no-credentials",
         "bad-endpoint", "anonymous-on-a-private-bucket"],
)  # fmt: skip
def test_a_failing_source_is_one_clear_line_exit_1_and_nothing_written(
    s3: SeaweedS3, tmp_path: Path, url: str, env: dict[str, str], message: str
) -> None:
    upload(s3, "errors/ok.bin", b"fine", parts=False)
    run_env = {k: v for k, v in {**environment(s3.endpoint), **env}.items() if v != ""}
    done = cli(run_env, "fetch", url, "--dest", str(tmp_path))
    assert done.returncode == 1, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("failed"), line
    assert message in line
    assert only_final_files(tmp_path) == []


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://bucket", "s3://bucket/", "s3://b/key", "s3://bucket/dir/", "s3://bu cket/k"],
)
def test_a_malformed_s3_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    done = cli(environment("http://127.0.0.1:9"), "fetch", url, "--dest", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("ed-extractor: error: invalid URL")
    with pytest.raises(InvalidURLError):
        parse_s3_url(url)


def test_probe_and_run_accept_s3_sources(s3: SeaweedS3, tmp_path: Path) -> None:
    document = b'[\n{"id64": 1},\n{"id64": 2}\n]\n'
    upload(s3, "run/systems.json.gz", gzip.compress(document), parts=False)
    upload(s3, "run/broken.json.gz", gzip.compress(document)[:-9], parts=False)
    env = environment(s3.endpoint)
    probe = cli(env, "probe", f"s3://{BUCKET}/run/systems.json.gz", "--json")
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["mime_type"] == "application/gzip"
    config = tmp_path / "sources.toml"
    config.write_text(
        f'[[source]]\nurl = "s3://{BUCKET}/run/systems.json.gz"\n'
        f'[[source]]\nurl = "s3://{BUCKET}/run/broken.json.gz"\n'
    )
    done = cli(env, "run", "--config", str(config), "--dest", str(tmp_path / "d"), "--json")
    lines = {line["name"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 1
    assert lines["systems.json.gz"]["status"] == "downloaded"
    assert lines["systems.json.gz"]["regime"] == "s3-multipart"
    assert "truncated gzip" in lines["broken.json.gz"]["error"]  # the content check still runs
    assert sorted(p.name for p in (tmp_path / "d").glob("*.gz")) == ["systems.json.gz"]


def test_the_object_check_knows_s3s_checksum_encodings() -> None:
    from ed_extractor.errors import VerificationError
    from ed_extractor.services.s3.checks import S3ObjectCheck
    from ed_extractor.services.s3.objects import S3Object

    data = b"123456789"  # the CRC catalogue's check input
    parts = [data[:5], data[5:]]
    part_md5s = b"".join(hashlib.md5(part).digest() for part in parts)
    etag = f'"{hashlib.md5(part_md5s).hexdigest()}-2"'
    checksums = {"crc64nvme": "rosUhgp5mIg=", "crc32": "y/Q5Jg==", "crc32c": "4waSgw=="}
    obj = S3Object("s3://b/k", "http://x/b/k", 9, etag, None, 2, 5, checksums)
    check = S3ObjectCheck(obj)
    for byte in range(len(data)):  # chunks that straddle the part boundary
        check.feed(data[byte : byte + 1])
    check.finish()
    wrong = S3Object("s3://b/k", "http://x/b/k", 9, etag.replace("-2", "-3"), None, 2, 5)
    check = S3ObjectCheck(wrong)
    check.feed(data)
    with pytest.raises(VerificationError, match="multipart ETag mismatch"):
        check.finish()
