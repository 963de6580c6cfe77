"""A static-file HTTP handler that behaves as nginx does: validators, conditions, byte ranges."""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import posixpath
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, ClassVar, Final
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

#: Content types by extension, also written into the nginx config (its mime.types lacks ``gz``).
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


class ByteRange:
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
                byte_range = ByteRange(0, size - 1)
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

    def requested_range(self, size: int, etag: str, mtime: int) -> ByteRange | None:
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
            return ByteRange(max(0, size - int(last_text)), size - 1)
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
        if first >= size or first > last:
            raise RangeNotSatisfiable(header)
        return ByteRange(first, min(last, size - 1))

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
        self, path: Path, size: int, etag: str, mtime: int, byte_range: ByteRange | None
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


class MirrorServer(ThreadingHTTPServer):
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
