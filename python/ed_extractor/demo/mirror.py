"""A local static HTTP mirror of a folder: nginx when installed, else a threaded Python server."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
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
from pathlib import Path
from types import TracebackType
from typing import Final, Literal
from urllib.parse import quote

from ed_extractor.demo.static import (
    CONTENT_TYPES,
    DEFAULT_CONTENT_TYPE,
    MirrorServer,
    StaticFileHandler,
)

__all__ = [
    "Mirror",
    "MirrorError",
    "StaticFileHandler",
    "nginx_config",
    "nginx_path",
    "start_mirror",
]

log = logging.getLogger(__name__)

MirrorKind = Literal["nginx", "python"]
Preference = Literal["auto", "nginx", "python"]

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
    limit_rate: str | None = None,
) -> Mirror:
    """Serve ``root`` over HTTP on ``host:port`` (0: a free port) and return the running mirror.

    ``prefer="auto"`` uses nginx when installed and falls back to Python if nginx will not start;
    ``"nginx"`` requires nginx; ``"python"`` (or a custom ``handler`` class) uses the Python server.
    ``limit_rate`` (nginx's syntax, e.g. ``"20m"``: bytes per second per connection) requires nginx.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise MirrorError(f"not a directory: {root}")
    if limit_rate is not None:
        prefer = "nginx"
    if prefer == "python" or handler is not None:
        return _start_python(root, host, port, handler or StaticFileHandler)
    binary = nginx_path()
    if binary is None:
        if prefer == "nginx":
            raise MirrorError("nginx is not installed (looked on PATH and in /usr/sbin)")
        return _start_python(root, host, port, StaticFileHandler)
    try:
        return _start_nginx(binary, root, host, port, limit_rate)
    except MirrorError as error:
        if prefer == "nginx":
            raise
        log.warning("nginx would not start (%s); serving with Python instead", error)
        return _start_python(root, host, port, StaticFileHandler)


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _start_python(root: Path, host: str, port: int, handler: type[StaticFileHandler]) -> Mirror:
    if handler.root != root:
        handler = handler.for_root(root)
    server = MirrorServer((host, port), handler)
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


def nginx_config(
    prefix: Path,
    root: Path,
    host: str,
    port: int,
    without: set[str],
    limit_rate: str | None = None,
) -> str:
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
    throttle = "" if limit_rate is None else f"        limit_rate {limit_rate};\n"
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
        f"{throttle}"
        "        location / { }\n"
        "    }\n"
        "}\n"
    )


def _start_nginx(binary: str, root: Path, host: str, port: int, limit_rate: str | None) -> Mirror:
    version, without = _nginx_build(binary)
    attempts = 1 if port else 5  # a port picked here may be taken before nginx binds it
    for attempt in range(attempts):
        chosen = port or _free_port(host)
        prefix = Path(tempfile.mkdtemp(prefix="ed-extractor-nginx-"))
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, root, host, chosen, without, limit_rate))
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
