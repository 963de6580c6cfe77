"""A local stand-in for Spansh's API on a real threaded HTTP server, enforcing a rate limit."""

from __future__ import annotations

import gzip
import json
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.httpd import QuietHandler, serve

BAD_JSON_ID = 13
QUEUED_POLLS = 3
BOMB_ID = 666
BOMB_INFLATED_BYTES = 1 << 30  # what the bomb's ~1 MB of gzip inflate to
BOMB_HEAD = b'{"system": '  # a JSON object opened, then only whitespace: valid until the cap


def system_dump(id64: int) -> dict[str, Any]:
    """A document shaped like ``/api/dump/{id64}``'s answer."""
    return {
        "system": {
            "id64": id64,
            "name": f"Test Sector AB-C d{id64}",
            "coords": {"x": 1.5, "y": -2.25, "z": id64 / 8},
            "bodies": [{"id64": id64 + (1 << 55), "name": "A 1", "type": "Planet"}],
            "stations": [],
        }
    }


@dataclass
class SpanshApi:
    """The server's state: its limit (requests in any 1 s window), what it saw, what it sent."""

    limit_per_s: int = 1000
    missing: set[int] = field(default_factory=set)
    bad_json: set[int] = field(default_factory=lambda: {BAD_JSON_ID})
    throttle_once: set[str] = field(default_factory=set)  # paths answered 429 the first time
    bombs: set[int] = field(default_factory=lambda: {BOMB_ID})  # dumps sent as a gzip bomb
    gzip_answers: bool = True  # gzip-encode answers when the request accepts gzip
    bomb_bytes_sent: int = 0
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of every request
    queued_polls: int = QUEUED_POLLS
    requests: int = 0
    too_many: int = 0
    result_polls: int = 0
    auth_headers: list[str | None] = field(default_factory=list)
    items: list[int] = field(default_factory=lambda: list(range(23)))
    _recent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, path: str) -> bool:
        """Count the request; False when it is one too many for the window (or throttled)."""
        with self._lock:
            self.requests += 1
            now = time.monotonic()
            self.arrivals.append(now)
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            self._recent.append(now)
            if len(self._recent) > self.limit_per_s or path in self.throttle_once:
                self.throttle_once.discard(path)
                self.too_many += 1
                return False
            return True

    def reply(
        self, method: str, path: str, query: dict[str, list[str]], accepted_encodings: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and extra headers for one admitted request: gzip-encoded if accepted."""
        status, body = self.answer(method, path, query)
        if self.gzip_answers and "gzip" in accepted_encodings:
            return status, gzip.compress(body), {"Content-Encoding": "gzip"}
        return status, body, {}

    def answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        """Status and body for one admitted request."""
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:2] == ["api", "dump"] and len(parts) == 3:
            id64 = int(parts[2])
            if id64 in self.missing:
                return 404, b'{"error": "not found"}'
            if id64 in self.bad_json:
                return 200, b'{"system": {"id64": 13, '
            return 200, json.dumps(system_dump(id64), indent=1).encode()
        if method == "POST" and path == "/api/systems/search":
            return 200, json.dumps({"job": "job-1", "status": "queued"}).encode()
        if method == "GET" and parts[:2] == ["api", "results"]:
            with self._lock:
                self.result_polls += 1
                polls = self.result_polls
            if parts[2] == "forever" or polls <= self.queued_polls:
                return 200, json.dumps({"status": "queued", "job": parts[2]}).encode()
            return 200, json.dumps({"status": "ok", "results": [{"name": "Sol"}]}).encode()
        if method == "GET" and path == "/api/items":
            page, size = int(query["page"][0]), int(query["size"][0])
            return 200, json.dumps(
                {"results": self.items[page * size : (page + 1) * size]}
            ).encode()
        if method == "GET" and path == "/api/feed":
            start = int(query.get("cursor", ["0"])[0])
            chunk = self.items[start : start + 10]
            after = start + 10 if start + 10 < len(self.items) else None
            return 200, json.dumps({"results": chunk, "next": after}).encode()
        return 404, b"{}"


def gzip_bomb(inflated_bytes: int = BOMB_INFLATED_BYTES) -> Iterator[bytes]:
    """A gzip stream, made on the fly, of a JSON object that inflates to ``inflated_bytes``.

    ``BOMB_HEAD``, MiBs of spaces, ``}``. The spaces are one MiB deflated once (about a KiB)
    after a full flush, so the same bytes stand for every MiB: the stream is about 1 MB and
    costs next to nothing to send.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    spaces = b" " * (1 << 20)
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip header: deflate, no name, no time
    yield deflate.compress(BOMB_HEAD) + deflate.flush(zlib.Z_FULL_FLUSH)
    deflated_spaces = deflate.compress(spaces) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(BOMB_HEAD)
    for _ in range((inflated_bytes - len(BOMB_HEAD) - 1) // len(spaces)):
        yield deflated_spaces
        crc = zlib.crc32(spaces, crc)
    size = inflated_bytes - (inflated_bytes - len(BOMB_HEAD) - 1) % len(spaces)
    yield deflate.compress(b"}") + deflate.flush() + struct.pack("<II", zlib.crc32(b"}", crc), size)


class SpanshApiHandler(QuietHandler):
    """Answers requests from the state of its class's ``api``."""

    api: SpanshApi

    def _respond(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        self.api.auth_headers.append(self.headers.get("Authorization"))
        if not self.api.admit(url.path):
            self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
        elif url.path in {f"/api/dump/{bomb}" for bomb in self.api.bombs}:
            self._send_bomb()
        else:
            accepted = self.headers.get("Accept-Encoding", "")
            self._send(*self.api.reply(method, url.path, parse_qs(url.query), accepted))

    def _send(self, status: int, body: bytes, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_bomb(self) -> None:
        """Stream the bomb, delimited by closing the connection; stop when the client goes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for piece in gzip_bomb():
                self.wfile.write(piece)
                self.api.bomb_bytes_sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self._respond("GET")

    def do_POST(self) -> None:
        self._respond("POST")


@contextmanager
def serve_api(api: SpanshApi) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1; yield its base URL."""
    handler = type("Handler", (SpanshApiHandler,), {"api": api})
    with serve(handler) as base_url:
        yield base_url
