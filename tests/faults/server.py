"""A misbehaving HTTP server on 127.0.0.1: one resource, served right or wrong on purpose, counted.

``FaultServer`` serves one ``Version`` (body + validators) under every path. By default it behaves
as a static server should (HEAD, GET, one byte range, strong If-Range, 416), and it answers each
*body GET* (a GET that is not the probe's ``Range: bytes=0-1023`` sample) by the ``Plan`` that the
test gives for that GET: cut the body short, reset the connection, stall, throttle, answer 503/429,
ignore the Range, shift the Content-Range, lie in Content-Length, stream forever, redirect. Every
request is recorded (method, path, Range, If-Range, status, body bytes actually written, arrival
time), thread-safely, so that tests can assert on what the client asked for and what it cost.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from tests.httpd import QuietHandler

SAMPLE_RANGE = "bytes=0-1023"  # the probe's sample request
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_SEND_CHUNK = 16 * 1024


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


@dataclass(frozen=True)
class Version:
    """One state of the served file: its bytes and validators (None: header not sent)."""

    body: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = field(default_factory=lambda: http_date(1_700_000_000))
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Plan:
    """How to answer one request; the defaults answer it correctly."""

    status: int | None = None  # an error status (no body): 404, 429, 503, ...
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (Retry-After, Location)
    version: Version | None = None  # serve this instead of the server's current version
    ignore_range: bool = False  # answer 200 with the whole body to a Range request
    range_shift: int = 0  # a 206 whose Content-Range starts this many bytes before the asked start
    range_total: int | None = None  # a 206 whose Content-Range names this total instead
    declared_extra: int = 0  # Content-Length this many bytes longer than the body sent
    cut_after: int | None = None  # send this many body bytes, then close (FIN)
    cut_pause: float = 0.3  # with cut_after: seconds between the last byte and the close
    reset: bool = False  # with cut_after: close with RST instead of FIN
    stall: bool = False  # with cut_after: then send nothing until the server stops
    drop: bool = False  # close the connection without any answer
    endless: bool = False  # 200 without a length, bytes until the client goes away
    throttle: tuple[int, float] | None = None  # (chunk bytes, seconds between chunks)
    turns: threading.Lock | None = None  # with throttle: one chunk at a time across the requests
    # that share the lock (an aggregate limit: more connections are no faster)
    hold: threading.Event | None = None  # send the headers, then wait for this before the body


OK = Plan()


class Exchange:
    """One request as the server saw it, and what it answered."""

    def __init__(self, index: int, method: str, path: str, headers: dict[str, str]) -> None:
        self.index = index
        self.method = method
        self.path = path
        self.headers = headers
        self.at = time.monotonic()
        self.finished: float | None = None  # when the answer ended (time.monotonic())
        self.status: int | None = None
        self.sent = 0  # body bytes handed to the kernel
        self.done = threading.Event()
        self.connection: socket.socket | None = None  # the connection it came on

    def client_still_connected(self) -> bool:
        """True while the client keeps this exchange's connection open (no FIN or RST seen)."""
        if self.connection is None or self.connection.fileno() < 0:
            return False
        try:  # a non-blocking twin: the handler's own socket has a timeout
            with socket.socket(fileno=os.dup(self.connection.fileno())) as twin:
                twin.setblocking(False)
                return twin.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True  # open, nothing to read
        except OSError:
            return False

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def if_range(self) -> str | None:
        return self.headers.get("if-range")

    @property
    def range_start(self) -> int | None:
        match = _RANGE.match(self.range or "")
        return int(match.group(1)) if match else None

    @property
    def is_sample(self) -> bool:
        return self.method == "GET" and self.range == SAMPLE_RANGE

    @property
    def is_body_get(self) -> bool:
        return self.method == "GET" and not self.is_sample

    def __repr__(self) -> str:
        extra = f" Range={self.range!r}" if self.range else ""
        extra += f" If-Range={self.if_range!r}" if self.if_range else ""
        return f"<{self.method} {self.path}{extra} -> {self.status}, {self.sent} B>"


PlanSource = Sequence[Plan] | Callable[[int, Exchange], Plan]


class FaultHandler(QuietHandler):
    """Delegates every request to its FaultServer."""

    server: FaultServer
    timeout = 30

    def do_GET(self) -> None:
        self.server.answer(self, "GET")

    def do_HEAD(self) -> None:
        self.server.answer(self, "HEAD")

    # --- sending, counted ---

    def write_counted(self, exchange: Exchange, data: bytes | memoryview) -> None:
        """Write ``data`` in chunks, counting what the kernel accepted."""
        view = memoryview(data)
        for start in range(0, len(view), _SEND_CHUNK):
            piece = view[start : start + _SEND_CHUNK]
            self.connection.sendall(piece)
            with self.server.lock:
                exchange.sent += len(piece)

    def abort(self, *, reset: bool) -> None:
        """End the connection now: FIN, or RST when ``reset``."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()


class FaultServer(ThreadingHTTPServer):
    """A threaded server of one resource whose body GETs follow ``plans``.

    ``plans`` is a list (the n-th body GET gets ``plans[n]``, later ones are served correctly) or a
    function ``(n, exchange) -> Plan``. ``every`` (optional) plans every request, HEAD and sample
    included, before that; ``redirects`` maps request paths to Location values (302).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        version: Version | None,
        plans: PlanSource = (),
        *,
        accept_ranges: bool = True,
        every: Callable[[Exchange], Plan | None] | None = None,
        redirects: dict[str, str] | None = None,
    ) -> None:
        super().__init__(("127.0.0.1", 0), FaultHandler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.version = version
        self.plans = plans
        self.accept_ranges = accept_ranges
        self.every = every
        self.redirects = redirects or {}
        self.exchanges: list[Exchange] = []
        self._body_gets = 0
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- life cycle ---

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def set_version(self, version: Version | None) -> None:
        with self.lock:
            self.version = version

    # --- what was seen ---

    def seen(self) -> list[Exchange]:
        with self.lock:
            return list(self.exchanges)

    def body_gets(self, since: int = 0) -> list[Exchange]:
        """GETs other than the probe's 1 KiB sample, from request index ``since`` on."""
        return [e for e in self.seen() if e.is_body_get and e.index >= since]

    def body_bytes(self, since: int = 0) -> int:
        """Body bytes sent for body GETs (the probe's sample excluded)."""
        return sum(e.sent for e in self.body_gets(since))

    def most_at_once(self) -> int:
        """The most body GETs the server was answering at the same time."""
        events = sorted(
            (moment, step)
            for e in self.body_gets()
            for moment, step in ((e.at, 1), (e.finished or time.monotonic(), -1))
        )
        most = running = 0
        for _, step in events:
            running += step
            most = max(most, running)
        return most

    def count(self, method: str) -> int:
        return sum(1 for e in self.seen() if e.method == method)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # --- answering ---

    def _plan(self, exchange: Exchange) -> Plan:
        if self.every is not None:
            chosen = self.every(exchange)
            if chosen is not None:
                return chosen
        if exchange.path in self.redirects:
            return Plan(status=302, headers={"Location": self.redirects[exchange.path]})
        if not exchange.is_body_get:
            return OK
        with self.lock:
            n = self._body_gets
            self._body_gets += 1
        if callable(self.plans):
            return self.plans(n, exchange)
        return self.plans[n] if n < len(self.plans) else OK

    def answer(self, handler: FaultHandler, method: str) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            exchange = Exchange(len(self.exchanges), method, handler.path, headers)
            exchange.connection = handler.connection
            self.exchanges.append(exchange)
        try:
            self._answer(handler, exchange, self._plan(exchange))
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            handler.close_connection = True
        finally:
            exchange.finished = time.monotonic()
            exchange.done.set()

    def _answer(self, h: FaultHandler, ex: Exchange, plan: Plan) -> None:
        if plan.drop:
            ex.status = 0
            h.abort(reset=False)
            return
        if plan.status is not None:
            self._error(h, ex, plan.status, plan.headers)
            return
        with self.lock:
            version = plan.version or self.version
        if version is None:
            self._error(h, ex, 404, {})
            return
        if plan.endless:
            self._endless(h, ex, version, plan)
            return
        body, size = memoryview(version.body), len(version.body)  # slices without copies
        status, first, content_range = 200, 0, None
        start = ex.range_start
        if (
            start is not None
            and self.accept_ranges
            and not plan.ignore_range
            and size > 0
            and _if_range_holds(ex.if_range, version)
        ):
            if start >= size:
                ex.status = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            match = _RANGE.match(ex.range or "")
            assert match is not None
            last = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            first = max(0, start - plan.range_shift)
            total = size if plan.range_total is None else plan.range_total
            status, content_range = 206, f"bytes {first}-{last}/{total}"
            body = body[first : last + 1]
        ex.status = status
        h.send_response(status)
        h.send_header("Content-Length", str(len(body) + plan.declared_extra))
        if content_range:
            h.send_header("Content-Range", content_range)
        self._validators(h, version)
        for name, value in plan.headers.items():
            h.send_header(name, value)
        h.end_headers()
        if ex.method == "HEAD":
            return
        if plan.hold is not None:
            plan.hold.wait(60)
        if plan.cut_after is not None:
            h.write_counted(ex, body[: plan.cut_after])
            if plan.stall:
                self.stopping.wait(60)
            else:  # as a real connection dies some time after its last bytes: the client has
                time.sleep(plan.cut_pause)  # read and stored them (and an RST cannot destroy them)
            h.abort(reset=plan.reset)
            return
        if plan.throttle is not None:
            chunk, delay = plan.throttle
            for offset in range(0, len(body), chunk):
                if self.stopping.is_set():
                    h.abort(reset=False)
                    return
                with plan.turns or contextlib.nullcontext():
                    h.write_counted(ex, body[offset : offset + chunk])
                    time.sleep(delay)
        else:
            h.write_counted(ex, body)
        if plan.declared_extra:
            h.abort(reset=False)  # the body ends early: the client must notice

    def _validators(self, h: FaultHandler, version: Version) -> None:
        h.send_header("Content-Type", version.content_type)
        if version.etag is not None:
            h.send_header("ETag", version.etag)
        if version.last_modified is not None:
            h.send_header("Last-Modified", version.last_modified)
        if self.accept_ranges:
            h.send_header("Accept-Ranges", "bytes")

    def _error(self, h: FaultHandler, ex: Exchange, status: int, headers: dict[str, str]) -> None:
        ex.status = status
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _endless(self, h: FaultHandler, ex: Exchange, version: Version, plan: Plan) -> None:
        ex.status = 200
        h.send_response(200)
        h.send_header("Content-Type", version.content_type)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        if ex.method == "HEAD":
            return
        pattern = (version.body or b"\0") * (1 + _SEND_CHUNK // max(1, len(version.body)))
        limit = 1 << 30  # a safety net for a client that never stops reading
        while not self.stopping.is_set() and ex.sent < limit:
            h.write_counted(ex, pattern[:_SEND_CHUNK])


def _if_range_holds(value: str | None, version: Version) -> bool:
    """RFC 9110 13.1.5: a strong ETag compared strongly, or an exact Last-Modified date."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        etag = version.etag
        return etag is not None and not etag.startswith("W/") and value == etag
    return version.last_modified is not None and value == version.last_modified


@contextlib.contextmanager
def running(server: FaultServer) -> Iterator[FaultServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
