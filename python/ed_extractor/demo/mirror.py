"""A local static HTTP mirror of a folder: nginx when installed, else a threaded Python server."""

from __future__ import annotations

import contextlib
import email.utils
import grp
import logging
import os
import posixpath
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Final, Literal
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

MirrorKind = Literal["nginx", "python"]
Preference = Literal["auto", "nginx", "python"]

#: Content types by file extension, shared by both servers (nginx's mime.types lacks ``gz``).
CONTENT_TYPES: Final = {
    "gz": "application/gzip",
    "zst": "application/zstd",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
    "zip": "application/zip",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "txt": "text/plain",
    "html": "text/html",
    "csv": "text/csv",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
_NGINX_CANDIDATES: Final = (
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
)
_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 5.0


class MirrorError(RuntimeError):
    """The mirror could not be started (nginx missing or refusing its configuration)."""


class Mirror:
    """A running mirror: ``base_url`` (no trailing slash) serves the files under ``root``."""

    def __init__(
        self, *, base_url: str, kind: MirrorKind, root: Path, stop: Callable[[], None]
    ) -> None:
        self.base_url = base_url
        self.kind: MirrorKind = kind
        self.root = root
        self._stop = stop
        self._stopped = False
        self._lock = threading.Lock()

    def url(self, name: str) -> str:
        """The URL of the file ``name`` (a path relative to ``root``)."""
        return f"{self.base_url}/{quote(name)}"

    def stop(self) -> None:
        """Stop serving and wait until the server is gone; calling it again does nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mirror(kind={self.kind!r}, base_url={self.base_url!r}, root={str(self.root)!r})"


def nginx_path() -> str | None:
    """The nginx binary to use, or None when nginx is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in _NGINX_CANDIDATES if os.access(c, os.X_OK)), None)


def start_mirror(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    prefer: Preference = "auto",
    handler: type[StaticFileHandler] | None = None,
) -> Mirror:
    """Serve ``root`` over HTTP on ``host:port`` (0: a free port) and return the running mirror.

    ``prefer="auto"`` uses nginx when installed and falls back to Python if nginx will not start;
    ``"nginx"`` requires nginx; ``"python"`` (or a custom ``handler`` class) uses the Python server.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise MirrorError(f"not a directory: {root}")
    if prefer == "python" or handler is not None:
        return _start_python(root, host, port, handler or StaticFileHandler)
    binary = nginx_path()
    if binary is None:
        if prefer == "nginx":
            raise MirrorError("nginx is not installed (looked on PATH and in /usr/sbin)")
        return _start_python(root, host, port, StaticFileHandler)
    try:
        return _start_nginx(binary, root, host, port)
    except MirrorError as error:
        if prefer == "nginx":
            raise
        log.warning("nginx would not start (%s); serving with Python instead", error)
        return _start_python(root, host, port, StaticFileHandler)


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- Python -----------------------------------------------------------------------------------


class _ByteRange:
    """An inclusive byte range ``first..last`` of a file."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class RangeNotSatisfiable(Exception):
    """The requested range lies outside the file (answered 416)."""


_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$")


class StaticFileHandler(BaseHTTPRequestHandler):
    """Serves the files under ``root`` as a static server such as nginx does.

    HEAD and GET; strong ETag ``"<mtime hex>-<size hex>"`` and Last-Modified; If-Match,
    If-Unmodified-Since (412), If-None-Match, If-Modified-Since (304); one byte range per request
    (206, 416 with ``Content-Range: bytes */size``), If-Range; nothing outside ``root``. Every step
    is a method so that tests can subclass it to misbehave on purpose.
    """

    protocol_version = "HTTP/1.1"
    server_version = "ed-extractor-mirror"
    root: ClassVar[Path] = Path()
    #: Seconds an idle keep-alive connection is kept open.
    timeout = 30

    @classmethod
    def for_root(cls, root: Path) -> type[StaticFileHandler]:
        """A subclass of this handler serving ``root`` (for servers built outside start_mirror)."""
        return type(cls.__name__, (cls,), {"root": Path(root).resolve()})

    # --- request flow ---

    def do_GET(self) -> None:
        self.serve(send_body=True)

    def do_HEAD(self) -> None:
        self.serve(send_body=False)

    def serve(self, *, send_body: bool) -> None:
        """Answer one GET or HEAD."""
        path = self.resolve(self.path)
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            file = path.open("rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with file:
            stat = os.fstat(file.fileno())
            size, mtime = stat.st_size, int(stat.st_mtime)
            etag = self.etag_for(size, mtime)
            precondition = self.check_preconditions(etag, mtime)
            if precondition is not None:
                self.send_not_modified_or_failed(precondition, etag, mtime)
                return
            try:
                byte_range = self.requested_range(size, etag, mtime)
            except RangeNotSatisfiable:
                self.send_unsatisfiable(size)
                return
            self.send_file_headers(path, size, etag, mtime, byte_range)
            if not send_body:
                return
            if byte_range is None:
                byte_range = _ByteRange(0, size - 1)
            try:
                self.send_file_body(file, byte_range.first, byte_range.length)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def resolve(self, raw_path: str) -> Path | None:
        """The file a request path names, or None if it is outside ``root`` or not a file."""
        try:
            path = unquote(urlsplit(raw_path).path, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return None
        if "\x00" in path or "\\" in path:
            return None
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            return None
        root = self.root.resolve()
        candidate = (root / posixpath.join(*parts)).resolve() if parts else root
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate

    # --- validators and conditions ---

    def etag_for(self, size: int, mtime: int) -> str:
        """nginx's strong ETag: hex mtime and hex size."""
        return f'"{mtime:x}-{size:x}"'

    def check_preconditions(self, etag: str, mtime: int) -> HTTPStatus | None:
        """412 or 304 when the conditional headers say so (RFC 9110 section 13.2.2 order)."""
        if_match = self.headers.get("If-Match")
        if if_match is not None:
            if not _etag_listed(if_match, etag, weak=False):
                return HTTPStatus.PRECONDITION_FAILED
        else:
            since = _http_date(self.headers.get("If-Unmodified-Since"))
            if since is not None and mtime > since:
                return HTTPStatus.PRECONDITION_FAILED
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            if _etag_listed(if_none_match, etag, weak=True):
                return HTTPStatus.NOT_MODIFIED
        else:
            since = _http_date(self.headers.get("If-Modified-Since"))
            if since is not None and mtime <= since:
                return HTTPStatus.NOT_MODIFIED
        return None

    def requested_range(self, size: int, etag: str, mtime: int) -> _ByteRange | None:
        """The one byte range to send, or None for the whole file; raises RangeNotSatisfiable."""
        header = self.headers.get("Range")
        if header is None or size == 0 or not self.if_range_holds(etag, mtime):
            return None  # an empty file is sent whole, as nginx does
        match = _RANGE.match(header)
        if match is None:  # malformed or several ranges: ignored, as RFC 9110 allows
            return None
        first_text, last_text = match.groups()
        if not first_text:
            if not last_text or int(last_text) == 0:
                raise RangeNotSatisfiable(header)
            return _ByteRange(max(0, size - int(last_text)), size - 1)
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
        if first >= size or first > last:
            raise RangeNotSatisfiable(header)
        return _ByteRange(first, min(last, size - 1))

    def if_range_holds(self, etag: str, mtime: int) -> bool:
        """False when an If-Range validator no longer matches (the whole file is sent)."""
        value = self.headers.get("If-Range")
        if value is None:
            return True
        value = value.strip()
        if value.startswith(('"', "W/")):
            return value == etag  # strong comparison; weak tags never match
        return _http_date(value) == mtime

    # --- responses ---

    def content_type(self, path: Path) -> str:
        return CONTENT_TYPES.get(path.suffix.lstrip(".").lower(), DEFAULT_CONTENT_TYPE)

    def send_validators(self, etag: str, mtime: int) -> None:
        self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        self.send_header("ETag", etag)

    def send_file_headers(
        self, path: Path, size: int, etag: str, mtime: int, byte_range: _ByteRange | None
    ) -> None:
        """Status line and headers of a 200 or 206 answer."""
        if byte_range is None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", str(size))
        else:
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Length", str(byte_range.length))
            self.send_header("Content-Range", f"bytes {byte_range.first}-{byte_range.last}/{size}")
        self.send_header("Content-Type", self.content_type(path))
        self.send_validators(etag, mtime)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def send_file_body(self, file: IO[bytes], first: int, length: int) -> None:
        """Send ``length`` bytes of ``file`` from offset ``first``: zero-copy where possible."""
        self.wfile.flush()
        if length > 0:  # a count of 0 would mean "to the end of the file"
            self.connection.sendfile(file, offset=first, count=length)

    def send_not_modified_or_failed(self, status: HTTPStatus, etag: str, mtime: int) -> None:
        self.send_response(status)
        self.send_validators(etag, mtime)
        if status != HTTPStatus.NOT_MODIFIED:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def send_unsatisfiable(self, size: int) -> None:
        self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _etag_listed(header: str, etag: str, *, weak: bool) -> bool:
    """Whether ``etag`` is in an If-Match / If-None-Match list (``*`` matches any)."""
    if header.strip() == "*":
        return True
    for item in header.split(","):
        tag = item.strip()
        if tag.startswith("W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag.removeprefix("W/"):
            return True
    return False


def _http_date(value: str | None) -> int | None:
    """Seconds since the epoch of an HTTP date, or None if absent or unparsable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


class _MirrorServer(ThreadingHTTPServer):
    """A threaded HTTP server that can close its open keep-alive connections when stopped."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[StaticFileHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _start_python(root: Path, host: str, port: int, handler: type[StaticFileHandler]) -> Mirror:
    if handler.root != root:
        handler = handler.for_root(root)
    server = _MirrorServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="mirror-httpd", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=_STOP_TIMEOUT_S)

    bound_port = server.server_address[1]
    log.info("python mirror of %s on %s", root, _base_url(host, bound_port))
    return Mirror(base_url=_base_url(host, bound_port), kind="python", root=root, stop=stop)


# --- nginx ------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _nginx_build(binary: str) -> tuple[tuple[int, ...], set[str]]:
    """nginx's version and the modules it was built without (``proxy``, ``uwsgi``, ...)."""
    info = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", info)
    version = tuple(int(n) for n in match.groups()) if match else (0, 0, 0)
    return version, set(re.findall(r"--without-http_(\w+?)_module", info))


def nginx_config(prefix: Path, root: Path, host: str, port: int, without: set[str]) -> str:
    """A minimal nginx.conf: everything nginx writes stays inside ``prefix``."""
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    user = ""
    if os.geteuid() == 0:  # workers would drop to www-data, who may not read root's files
        user = f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    temp_paths = "".join(
        f"    {module}_temp_path {prefix / module};\n"
        for module in ("proxy", "fastcgi", "uwsgi", "scgi")
        if module not in without
    )
    types = "".join(f"        {ctype} {ext};\n" for ext, ctype in CONTENT_TYPES.items())
    return (
        f"{user}worker_processes 1;\n"
        "daemon off;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"lock_file {prefix / 'nginx.lock'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    types {{\n{types}    }}\n"
        f"    default_type {DEFAULT_CONTENT_TYPE};\n"
        f"    access_log {prefix / 'access.log'};\n"
        f"    client_body_temp_path {prefix / 'client_body'};\n"
        f"{temp_paths}"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    etag on;\n"
        "    keepalive_timeout 30;\n"
        "    server_tokens off;\n"
        "    server {\n"
        f"        listen {listen};\n"
        "        server_name localhost;\n"
        f'        root "{root}";\n'
        "        disable_symlinks on from=$document_root;\n"  # no way out of root via links
        "        location / { }\n"
        "    }\n"
        "}\n"
    )


def _start_nginx(binary: str, root: Path, host: str, port: int) -> Mirror:
    version, without = _nginx_build(binary)
    attempts = 1 if port else 5  # a port picked here may be taken before nginx binds it
    for attempt in range(attempts):
        chosen = port or _free_port(host)
        prefix = Path(tempfile.mkdtemp(prefix="ed-extractor-nginx-"))
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, root, host, chosen, without))
        command = [binary, "-p", f"{prefix}/", "-c", str(conf)]
        if version >= (1, 19, 5):  # else the compiled-in error log is opened before the config
            command += ["-e", str(prefix / "error.log")]
        with (prefix / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            _wait_until_listening(process, host, chosen, prefix)
        except MirrorError as error:
            _terminate(process)
            shutil.rmtree(prefix, ignore_errors=True)
            if "Address already in use" in str(error) and attempt + 1 < attempts:
                continue
            raise
        base_url = _base_url(host, chosen)
        log.info("nginx mirror of %s on %s (prefix %s)", root, base_url, prefix)

        def stop(process: subprocess.Popen[bytes] = process, prefix: Path = prefix) -> None:
            _terminate(process)
            shutil.rmtree(prefix, ignore_errors=True)

        return Mirror(base_url=base_url, kind="nginx", root=root, stop=stop)
    raise AssertionError("unreachable")  # pragma: no cover


def _wait_until_listening(
    process: subprocess.Popen[bytes], host: str, port: int, prefix: Path
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MirrorError(f"nginx exited with {process.returncode}: {_log_tail(prefix)}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise MirrorError(f"nginx did not listen on {host}:{port} within {_START_TIMEOUT_S}s")


def _log_tail(prefix: Path) -> str:
    lines = []
    for name in ("error.log", "stderr.log"):
        with contextlib.suppress(OSError):
            lines += (prefix / name).read_text(errors="replace").splitlines()
    return " | ".join(line for line in lines[-3:] if line.strip()) or "no error output"


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Graceful stop (SIGQUIT), then fast (SIGTERM), then SIGKILL; always reaps the process."""
    for sig in (signal.SIGQUIT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            process.send_signal(sig)
            process.wait(timeout=_STOP_TIMEOUT_S)
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()
