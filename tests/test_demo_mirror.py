"""The demo mirror serves a folder like a static nginx does, whichever implementation runs."""

from __future__ import annotations

import email.utils
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from ed_extractor.demo import mirror as mirror_module
from ed_extractor.demo.generator import generate_dump
from ed_extractor.demo.mirror import (
    Mirror,
    MirrorError,
    StaticFileHandler,
    nginx_config,
    nginx_path,
    start_mirror,
)
from tests.httpd import serve

SECRET = b"root:x:0:0:outside the mirror root\n"
GZ = "galaxy_1day.json.gz"
BIG = "big.bin"


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def request(
    base_url: str, method: str, path: str, headers: dict[str, str] | None = None
) -> Response:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    url = urlsplit(base_url)
    assert url.hostname is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<base>/root`` is served; ``<base>/secret.txt`` lies outside it."""
    base = tmp_path_factory.mktemp("mirror-tree")
    root = base / "root"
    root.mkdir()
    (base / "secret.txt").write_bytes(SECRET)
    generate_dump(root / GZ, systems=200, seed=1, populated=False, stations=False)
    (root / BIG).write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "sub").mkdir()
    (root / "sub" / "nested.json").write_bytes(b'{"ok": true}\n')
    (root / "notes.unknownext").write_bytes(b"?")
    (root / "empty.gz").write_bytes(b"")
    (root / "link-out.txt").symlink_to(base / "secret.txt")
    return root


@pytest.fixture(scope="module", params=["python", "nginx"])
def mirror(request: pytest.FixtureRequest, tree: Path) -> Iterator[Mirror]:
    kind = request.param
    if kind == "nginx" and nginx_path() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); CI installs it")
    with start_mirror(tree, prefer=kind) as running:
        assert running.kind == kind
        yield running


def file_bytes(tree: Path, name: str) -> bytes:
    return (tree / name).read_bytes()


def test_get_returns_the_file(mirror: Mirror, tree: Path) -> None:
    response = request(mirror.base_url, "GET", f"/{GZ}")
    assert response.status == 200
    assert response.body == file_bytes(tree, GZ)
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Content-Type"] == "application/gzip"


def test_get_streams_a_large_file(mirror: Mirror, tree: Path) -> None:
    response = request(mirror.base_url, "GET", f"/{BIG}")
    assert response.status == 200
    assert response.body == file_bytes(tree, BIG)


def test_get_serves_nested_paths_and_types_by_extension(mirror: Mirror) -> None:
    nested = request(mirror.base_url, "GET", "/sub/nested.json")
    assert (nested.status, nested.body) == (200, b'{"ok": true}\n')
    assert nested.headers["Content-Type"] == "application/json"
    other = request(mirror.base_url, "GET", "/notes.unknownext")
    assert other.headers["Content-Type"] == "application/octet-stream"


def test_head_gives_size_and_validators_without_body(mirror: Mirror, tree: Path) -> None:
    response = request(mirror.base_url, "HEAD", f"/{GZ}")
    stat = (tree / GZ).stat()
    assert response.status == 200
    assert response.body == b""
    assert response.headers["Content-Length"] == str(stat.st_size)
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'  # nginx-style
    modified = email.utils.parsedate_to_datetime(response.headers["Last-Modified"])
    assert int(modified.timestamp()) == int(stat.st_mtime)


def test_range_from_start(mirror: Mirror, tree: Path) -> None:
    data = file_bytes(tree, BIG)
    response = request(mirror.base_url, "GET", f"/{BIG}", {"Range": "bytes=0-1023"})
    assert response.status == 206
    assert response.body == data[:1024]
    assert response.headers["Content-Range"] == f"bytes 0-1023/{len(data)}"
    assert response.headers["Content-Length"] == "1024"


def test_range_open_ended_tail(mirror: Mirror, tree: Path) -> None:
    data = file_bytes(tree, BIG)
    offset = len(data) - 12345
    response = request(mirror.base_url, "GET", f"/{BIG}", {"Range": f"bytes={offset}-"})
    assert response.status == 206
    assert response.body == data[offset:]
    assert response.headers["Content-Range"] == f"bytes {offset}-{len(data) - 1}/{len(data)}"


def test_range_suffix_and_clamped_end(mirror: Mirror, tree: Path) -> None:
    data = file_bytes(tree, GZ)
    suffix = request(mirror.base_url, "GET", f"/{GZ}", {"Range": "bytes=-100"})
    assert (suffix.status, suffix.body) == (206, data[-100:])
    clamped = request(mirror.base_url, "GET", f"/{GZ}", {"Range": "bytes=10-999999999"})
    assert (clamped.status, clamped.body) == (206, data[10:])
    assert clamped.headers["Content-Range"] == f"bytes 10-{len(data) - 1}/{len(data)}"


def test_range_past_the_end_is_unsatisfiable(mirror: Mirror, tree: Path) -> None:
    size = len(file_bytes(tree, GZ))
    response = request(mirror.base_url, "GET", f"/{GZ}", {"Range": f"bytes={size}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"
    empty = request(mirror.base_url, "GET", "/empty.gz", {"Range": "bytes=0-"})
    assert (empty.status, empty.body) == (200, b"")  # as nginx: an empty file is sent whole


def validators(mirror: Mirror, name: str) -> tuple[str, str]:
    head = request(mirror.base_url, "HEAD", f"/{name}")
    return head.headers["ETag"], head.headers["Last-Modified"]


def test_if_none_match_with_the_etag_is_not_modified(mirror: Mirror) -> None:
    etag, _ = validators(mirror, GZ)
    response = request(mirror.base_url, "GET", f"/{GZ}", {"If-None-Match": etag})
    assert response.status == 304
    assert response.body == b""
    assert response.headers["ETag"] == etag
    other = request(mirror.base_url, "GET", f"/{GZ}", {"If-None-Match": '"0-0"'})
    assert other.status == 200


def test_if_modified_since_last_modified_is_not_modified(mirror: Mirror) -> None:
    _, modified = validators(mirror, GZ)
    response = request(mirror.base_url, "GET", f"/{GZ}", {"If-Modified-Since": modified})
    assert response.status == 304
    assert response.body == b""
    older = email.utils.formatdate(0, usegmt=True)
    assert request(mirror.base_url, "GET", f"/{GZ}", {"If-Modified-Since": older}).status == 200


def test_if_range_with_a_stale_etag_sends_the_whole_file(mirror: Mirror, tree: Path) -> None:
    headers = {"Range": "bytes=0-1023", "If-Range": '"1-1"'}
    response = request(mirror.base_url, "GET", f"/{GZ}", headers)
    assert response.status == 200
    assert response.body == file_bytes(tree, GZ)


def test_if_range_with_current_validators_sends_the_range(mirror: Mirror, tree: Path) -> None:
    etag, modified = validators(mirror, GZ)
    for validator in (etag, modified):
        headers = {"Range": "bytes=0-1023", "If-Range": validator}
        response = request(mirror.base_url, "GET", f"/{GZ}", headers)
        assert response.status == 206, validator
        assert response.body == file_bytes(tree, GZ)[:1024]


def test_missing_file_is_404(mirror: Mirror) -> None:
    assert request(mirror.base_url, "GET", "/galaxy_9days.json.gz").status == 404
    assert request(mirror.base_url, "HEAD", "/no/such/dir/file.gz").status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..\\secret.txt",
        "/link-out.txt",
    ],
)
def test_nothing_outside_root_is_served(mirror: Mirror, path: str) -> None:
    response = request(mirror.base_url, "GET", path)
    assert response.status in (400, 403, 404), response.status
    assert b"root:x:0:0" not in response.body


def test_connection_is_kept_alive(mirror: Mirror, tree: Path) -> None:
    url = urlsplit(mirror.base_url)
    assert url.hostname is not None
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", f"/{GZ}")
        assert conn.getresponse().read() == file_bytes(tree, GZ)
        first_socket = conn.sock
        conn.request("HEAD", f"/{GZ}", headers={"Range": "bytes=0-1"})
        assert conn.getresponse().status == 206
        assert conn.sock is first_socket
    finally:
        conn.close()


# --- lifecycle and choice of implementation ------------------------------------------------------


def port_of(base_url: str) -> int:
    port = urlsplit(base_url).port
    assert port is not None
    return port


def assert_refused(base_url: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=2).close()


@pytest.mark.parametrize("kind", ["python", "nginx"])
def test_stop_releases_the_port_and_is_idempotent(tree: Path, kind: str) -> None:
    if kind == "nginx" and nginx_path() is None:
        pytest.skip("nginx is not installed (apt-get install nginx); CI installs it")
    running = start_mirror(tree, prefer=kind)  # type: ignore[arg-type]
    idle = http.client.HTTPConnection("127.0.0.1", port_of(running.base_url), timeout=10)
    idle.request("HEAD", f"/{GZ}")
    idle.getresponse().read()  # an idle keep-alive connection must not block stop()
    running.stop()
    running.stop()
    idle.close()
    assert_refused(running.base_url)


def test_explicit_port_is_used(tree: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with start_mirror(tree, port=port, prefer="python") as running:
        assert running.base_url == f"http://127.0.0.1:{port}"
        assert request(running.base_url, "HEAD", f"/{GZ}").status == 200


def test_auto_prefers_nginx_and_falls_back_to_python(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_mirror(tree) as running:
        assert running.kind == ("nginx" if nginx_path() else "python")
    monkeypatch.setattr(mirror_module, "nginx_path", lambda: None)
    with start_mirror(tree, prefer="auto") as running:
        assert running.kind == "python"
    with pytest.raises(MirrorError, match="nginx"):
        start_mirror(tree, prefer="nginx")


def test_root_must_be_a_directory(tree: Path) -> None:
    with pytest.raises(MirrorError):
        start_mirror(tree / GZ, prefer="python")


def test_nginx_config_writes_only_inside_its_prefix(tmp_path: Path, tree: Path) -> None:
    config = nginx_config(tmp_path, tree, "127.0.0.1", 8080, without=set())
    paths = set(re.findall(r"[\s\"](/[^\s;\"]+)", config))
    assert str(tree) in paths
    assert {str(tmp_path / "nginx.pid"), str(tmp_path / "error.log")} <= paths
    assert all(p == str(tree) or p.startswith(f"{tmp_path}/") for p in paths), paths
    assert "listen 127.0.0.1:8080;" in config
    assert "etag on;" in config
    assert "sendfile on;" in config
    assert ("user " in config) == (os.geteuid() == 0)
    assert "uwsgi_temp_path" not in nginx_config(tmp_path, tree, "::1", 1, without={"uwsgi"})


# --- the Python handler is a base for misbehaving test servers ------------------------------------


class HalfBodyHandler(StaticFileHandler):
    """Announces the full length but sends only half of the bytes, then hangs up."""

    def send_file_body(self, file: IO[bytes], first: int, length: int) -> None:
        file.seek(first)
        self.wfile.write(file.read(length // 2))
        self.close_connection = True


def test_handler_methods_can_be_overridden(tree: Path) -> None:
    with start_mirror(tree, handler=HalfBodyHandler) as running:
        assert running.kind == "python"
        url = urlsplit(running.base_url)
        assert url.hostname is not None
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", f"/{GZ}")
        with pytest.raises(http.client.IncompleteRead):
            conn.getresponse().read()
        conn.close()


def test_handler_bound_to_a_root_works_with_the_test_server(tree: Path) -> None:
    with serve(StaticFileHandler.for_root(tree)) as base_url:
        response = request(base_url, "GET", f"/{GZ}", {"Range": "bytes=0-9"})
        assert (response.status, response.body) == (206, file_bytes(tree, GZ)[:10])


# --- command line ---------------------------------------------------------------------------------


def test_serve_command_prints_the_url_and_stops_on_sigterm(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "ed_extractor.demo", "serve", "--root", str(tree)]
    process = subprocess.Popen(
        [*command, "--prefer", "python"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url), base_url
        assert request(base_url, "HEAD", f"/{GZ}").status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert process.stdout.read() == ""  # the URL is the only line on stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()
    assert_refused(base_url)
