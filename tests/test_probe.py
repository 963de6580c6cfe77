"""Specification of SourceProber against real HTTP servers on 127.0.0.1, a handler per behaviour."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import httpx
import pytest

from ed_extractor.errors import (
    InvalidURLError,
    ProbeError,
    ProtocolError,
    TransferError,
    UnexpectedContentError,
)
from ed_extractor.http import SOCKET_READ_BYTES, make_client
from ed_extractor.services.file_transfer.regimes.zstd import zstd
from ed_extractor.services.source_probe.models import ProbeResult
from ed_extractor.services.source_probe.prober import SourceProber
from ed_extractor.services.source_probe.sniff import GZIP, HTML, JSON, OCTET_STREAM, XML, ZSTD
from tests.httpd import QuietHandler, serve

ETAG = '"5f3a-62b1c9d4"'
LAST_MODIFIED = "Wed, 01 Jan 2025 03:00:00 GMT"
JSON_TEXT = json.dumps(
    [{"id64": i, "name": f"Ōkami Ærø {i}", "coords": [i, -i, 0]} for i in range(200)],
    ensure_ascii=False,
).encode()
GZIP_BODY = gzip.compress(random.Random(7).randbytes(20_000))
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head><body/></html>"
XML_PAGE = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>'


class Seen(NamedTuple):
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    client_port: int


class StaticFile(QuietHandler):
    """A well-behaved static file server: HEAD with validators, byte ranges, keep-alive."""

    body: ClassVar[bytes] = GZIP_BODY
    content_type: ClassVar[str] = "application/gzip"
    extra_headers: ClassVar[dict[str, str]] = {}
    honours_range: ClassVar[bool] = True
    redirects: ClassVar[dict[str, str]] = {}
    seen: ClassVar[list[Seen]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.seen = []

    def do_HEAD(self) -> None:
        self._record()
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._record()
        self._answer(send_body=True)

    def _record(self) -> None:
        type(self).seen.append(
            Seen(self.command, self.path, dict(self.headers.items()), self.client_address[1])
        )

    def _answer(self, *, send_body: bool) -> None:
        if self.path in self.redirects:
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, status, headers = self.body, HTTPStatus.OK, dict(self.extra_headers)
        requested = self.headers.get("Range")
        if send_body and requested and self.honours_range:
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", requested)
            assert match, requested
            start, end = int(match[1]), min(int(match[2]), len(body) - 1)
            if start >= len(body):
                status, headers["Content-Range"] = (
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    f"bytes */{len(body)}",
                )
                body = b""
            else:
                status, headers["Content-Range"] = (
                    HTTPStatus.PARTIAL_CONTENT,
                    f"bytes {start}-{end}/{len(body)}",
                )
                body = body[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("ETag", ETAG)
        self.send_header("Last-Modified", LAST_MODIFIED)
        if self.honours_range:
            self.send_header("Accept-Ranges", "bytes")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client() as client:
        yield client


@pytest.fixture
def prober(client: httpx.Client) -> SourceProber:
    return SourceProber(client)


def test_a_range_capable_server_costs_a_head_and_one_1kib_ranged_get(
    prober: SourceProber,
) -> None:
    class Server(StaticFile):
        pass

    with serve(Server) as base:
        url = f"{base}/dumps/systems.json.gz"
        result = prober.probe(url)
        again = prober.probe(url)

    assert again == result
    assert result == ProbeResult(
        url=url,
        final_url=url,
        status_code=200,
        content_length=len(GZIP_BODY),
        etag=ETAG,
        last_modified=LAST_MODIFIED,
        mime_type=GZIP,
        is_range_supported=True,
        content_type="application/gzip",
        content_encoding=None,
    )
    assert [(s.method, s.headers.get("Range")) for s in Server.seen] == [
        ("HEAD", None),
        ("GET", "bytes=0-1023"),
    ] * 2
    assert all(s.headers["Accept-Encoding"] == "identity" for s in Server.seen)
    assert len({s.client_port for s in Server.seen}) == 1, "a short sample keeps the connection"


def test_probe_json_has_exactly_the_keys_of_the_command_line_contract(
    prober: SourceProber,
) -> None:
    class Server(StaticFile):
        pass

    with serve(Server) as base:
        dumped = prober.probe(f"{base}/systems.json.gz").model_dump(mode="json")

    assert list(dumped) == [
        "url",
        "final_url",
        "status_code",
        "content_length",
        "etag",
        "last_modified",
        "mime_type",
        "is_range_supported",
        "content_type",
        "content_encoding",
    ]
    assert json.loads(json.dumps(dumped)) == dumped


class CountingTransport(httpx.HTTPTransport):
    """A real network transport that counts the response body bytes the client pulled."""

    def __init__(self) -> None:
        super().__init__()
        self.body_bytes_read = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        inner: httpx.SyncByteStream = stream
        transport = self

        class Counted(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in inner:
                    transport.body_bytes_read += len(chunk)
                    yield chunk

            def close(self) -> None:
                inner.close()

        response.stream = Counted()
        return response


def test_a_server_that_ignores_range_and_sends_1_gib_costs_at_most_one_read() -> None:
    size = 1 << 30
    block = 64 * 1024

    class IgnoresRange(QuietHandler):
        sent = 0
        outcome = "still sending"
        finished = threading.Event()

        def do_HEAD(self) -> None:
            self._headers()

        def do_GET(self) -> None:
            self._headers()
            cls = type(self)
            chunk = b"\x1f\x8b\x08\x00" + bytes(block - 4)
            self.close_connection = True
            try:
                while cls.sent < size:
                    self.wfile.write(chunk)
                    cls.sent += len(chunk)
                    chunk = bytes(block)
                cls.outcome = "sent everything"
            except (BrokenPipeError, ConnectionResetError):
                cls.outcome = "closed by client"
            finally:
                cls.finished.set()

        def _headers(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(size))
            self.end_headers()

    transport = CountingTransport()
    with make_client(transport=transport) as client, serve(IgnoresRange) as base:
        result = SourceProber(client).probe(f"{base}/galaxy.json.gz")
        assert IgnoresRange.finished.wait(timeout=30), "the server never noticed the client left"

    assert result.mime_type == GZIP
    assert result.content_length == size
    assert result.is_range_supported is False
    assert transport.body_bytes_read <= SOCKET_READ_BYTES
    assert IgnoresRange.outcome == "closed by client"
    assert IgnoresRange.sent < 64 * 1024 * 1024  # what socket buffers held, nowhere near 1 GiB


class RefusesHead405(StaticFile):
    def do_HEAD(self) -> None:
        self._record()
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET")
        self.send_header("Content-Length", "0")
        self.end_headers()


class RefusesHead501(StaticFile):
    def do_HEAD(self) -> None:
        self._record()
        self.send_error(HTTPStatus.NOT_IMPLEMENTED)


class HeadNotFound(StaticFile):
    def do_HEAD(self) -> None:
        self._record()
        self.send_error(HTTPStatus.NOT_FOUND)


class HeadWithoutLength(StaticFile):
    def do_HEAD(self) -> None:
        self._record()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/gzip")
        self.end_headers()


@pytest.mark.parametrize(
    "handler", [RefusesHead405, RefusesHead501, HeadNotFound, HeadWithoutLength]
)
def test_a_head_that_cannot_be_believed_is_replaced_by_the_ranged_get_alone(
    prober: SourceProber, handler: type[StaticFile]
) -> None:
    with serve(handler) as base:
        url = f"{base}/systems.json.gz"
        head = prober.head(url)
        result = prober.sample(url, head)

    assert head is not None
    assert head.method == "GET"
    assert result.status_code == 206
    assert result.content_length == len(GZIP_BODY)  # from Content-Range: bytes 0-1023/TOTAL
    assert result.is_range_supported is True
    assert result.mime_type == GZIP
    assert result.etag == ETAG
    assert [s.method for s in handler.seen] == ["HEAD", "GET"], "the sample is not fetched twice"


def test_the_content_type_header_is_only_a_hint(prober: SourceProber) -> None:
    class LyingContentType(StaticFile):
        content_type = "text/html; charset=utf-8"

    with serve(LyingContentType) as base:
        result = prober.probe(f"{base}/systems.json.gz")

    assert result.mime_type == GZIP
    assert result.content_type == "text/html; charset=utf-8"


def test_a_gzip_file_served_with_content_encoding_gzip_sniffs_as_the_raw_gzip_bytes(
    prober: SourceProber,
) -> None:
    class TransportEncoded(StaticFile):
        body = gzip.compress(JSON_TEXT)
        content_type = "application/json"
        extra_headers: ClassVar[dict[str, str]] = {"Content-Encoding": "gzip"}

    with serve(TransportEncoded) as base:
        result = prober.probe(f"{base}/systems.json.gz")

    assert result.mime_type == GZIP
    assert result.content_encoding == "gzip"
    assert result.content_type == "application/json"


@pytest.mark.parametrize(("page", "sniffed"), [(HTML_PAGE, HTML), (XML_PAGE, XML)])
def test_a_200_page_never_passes_as_a_gz_dump(
    prober: SourceProber, page: bytes, sniffed: str
) -> None:
    class ChallengePage(StaticFile):
        body = page
        content_type = "application/gzip"

    with serve(ChallengePage) as base:
        url = f"{base}/systems.json.gz"
        with pytest.raises(UnexpectedContentError) as caught:
            prober.probe(url)

    assert caught.value.url == url
    assert caught.value.message == (
        f"expected application/gzip (from the .gz extension) but the server sent {sniffed}"
    )


def test_an_explicit_expect_is_checked_even_without_an_extension(prober: SourceProber) -> None:
    class Server(StaticFile):
        pass

    with serve(Server) as base, pytest.raises(UnexpectedContentError) as caught:
        prober.probe(f"{base}/download/latest", expect="json")

    assert caught.value.message == (
        'expected application/json (from expect = "json") but the server sent application/gzip'
    )


def test_sample_checks_expectations_too_because_pipelines_call_head_and_sample_apart(
    prober: SourceProber,
) -> None:
    class Page(StaticFile):
        body = HTML_PAGE

    with serve(Page) as base:
        url = f"{base}/systems.json.gz"
        head = prober.head(url)
        with pytest.raises(UnexpectedContentError, match=r"from the \.gz extension"):
            prober.sample(url, head)
        with pytest.raises(UnexpectedContentError, match='from expect = "zstd"'):
            prober.sample(f"{base}/blob", None, expect="zstd")
        assert prober.sample(url, head, expect="binary").mime_type == HTML


def test_expect_binary_accepts_anything_whatever_the_extension(prober: SourceProber) -> None:
    class Page(StaticFile):
        body = HTML_PAGE

    with serve(Page) as base:
        result = prober.probe(f"{base}/systems.json.gz", expect="binary")

    assert result.mime_type == HTML


def test_a_json_array_served_as_text_plain_is_json(prober: SourceProber) -> None:
    class PlainJson(StaticFile):
        body = b"\n  " + JSON_TEXT
        content_type = "text/plain; charset=utf-8"

    with serve(PlainJson) as base:
        result = prober.probe(f"{base}/systems.json")

    assert result.mime_type == JSON
    assert result.content_length == len(PlainJson.body)


def test_zstd_bytes_are_zstd(prober: SourceProber) -> None:
    class Zstd(StaticFile):
        body = zstd.compress(JSON_TEXT)
        content_type = "application/octet-stream"

    with serve(Zstd) as base:
        result = prober.probe(f"{base}/systems.json.zst")

    assert result.mime_type == ZSTD


def test_redirects_give_the_final_url_and_expectations_come_from_the_requested_url(
    prober: SourceProber,
) -> None:
    class Cdn(StaticFile):
        redirects: ClassVar[dict[str, str]] = {
            "/latest/systems.json.gz": "/blobs/7f3a9c",
            "/download?id=1": "/files/systems.json.gz",
        }

    with serve(Cdn) as base:
        followed = prober.probe(f"{base}/latest/systems.json.gz")
        Cdn.body = HTML_PAGE
        no_extension = prober.probe(f"{base}/download?id=1")

    assert followed.url == f"{base}/latest/systems.json.gz"
    assert followed.final_url == f"{base}/blobs/7f3a9c"
    assert followed.mime_type == GZIP
    # The target's ".gz" is not the requested name: nothing was expected of /download?id=1.
    assert no_extension.final_url == f"{base}/files/systems.json.gz"
    assert no_extension.mime_type == HTML


def test_a_redirect_to_a_login_page_fails_the_gz_expectation(prober: SourceProber) -> None:
    class Login(StaticFile):
        body = HTML_PAGE
        redirects: ClassVar[dict[str, str]] = {"/systems.json.gz": "/login"}

    with serve(Login) as base, pytest.raises(UnexpectedContentError, match="text/html"):
        prober.probe(f"{base}/systems.json.gz")


def test_too_many_redirects_is_a_transfer_error(prober: SourceProber) -> None:
    class Loop(StaticFile):
        redirects: ClassVar[dict[str, str]] = {"/a.json.gz": "/b", "/b": "/a.json.gz"}

    with serve(Loop) as base, pytest.raises(TransferError, match="too many redirects"):
        prober.probe(f"{base}/a.json.gz")


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_an_error_status_is_a_transfer_error_carrying_it(prober: SourceProber, status: int) -> None:
    class Broken(StaticFile):
        def _answer(self, *, send_body: bool) -> None:
            self.send_error(status)

    with serve(Broken) as base:
        url = f"{base}/systems.json.gz"
        with pytest.raises(TransferError) as caught:
            prober.probe(url)

    assert caught.value.status_code == status
    assert caught.value.url == url
    assert f"HTTP {status}" in str(caught.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``ed-extractor ARGS`` in a fresh interpreter, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ED_EXTRACTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "ed_extractor", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**env, "ED_EXTRACTOR_RETRY_ATTEMPTS": "1", "ED_EXTRACTOR_LOG_FORMAT": "text"},
    )  # fmt: skip


@pytest.mark.parametrize(("status", "meaning"), [(404, "not found"), (403, "access denied")])
@pytest.mark.parametrize("refused", ["every request", "the body GET"])
def test_a_refused_url_is_one_line_saying_what_the_status_means_whichever_request_met_it(
    tmp_path: Path, status: int, meaning: str, refused: str
) -> None:
    class Refusing(StaticFile):
        def _answer(self, *, send_body: bool) -> None:
            probing = not send_body or self.headers.get("Range") == "bytes=0-1023"
            if refused == "every request" or not probing:
                self.send_error(status)
            else:
                super()._answer(send_body=send_body)

    with serve(Refusing) as base:
        url = f"{base}/dumps/systems.json.gz"
        fetched = run_cli("fetch", url, "--dest", str(tmp_path / "dest"))
        probed = run_cli("probe", url)

    assert fetched.returncode == 1, fetched.stderr
    assert fetched.stdout.splitlines() == [
        f"failed     systems.json.gz  {meaning}: HTTP {status} ({url})"
    ]
    if refused == "every request":  # the probe alone sees it (HEAD, then the ranged GET)
        assert probed.returncode == 1
        assert probed.stderr.splitlines()[-1] == (
            f"ed-extractor: error: {meaning}: HTTP {status} ({url})"
        )
    else:
        assert probed.returncode == 0, probed.stderr


def test_a_fetch_costs_a_head_the_sample_and_one_body_get(tmp_path: Path) -> None:
    class Server(StaticFile):
        pass

    with serve(Server) as base:
        url = f"{base}/dumps/systems.json.gz"
        fetched = run_cli("fetch", url, "--dest", str(tmp_path), "--json")
        again = run_cli("fetch", url, "--dest", str(tmp_path), "--json")

    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["status"] == "downloaded"
    assert json.loads(again.stdout)["status"] == "unchanged"
    assert [(s.method, s.headers.get("Range")) for s in Server.seen] == [
        ("HEAD", None),
        ("GET", "bytes=0-1023"),
        ("GET", None),  # the body, whole: nothing learnt before is asked for again
        ("HEAD", None),  # the second run: validators match, no body
    ]


def test_connection_refused_is_a_transfer_error_naming_the_url(prober: SourceProber) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    url = f"http://127.0.0.1:{port}/systems.json.gz"

    with pytest.raises(TransferError) as caught:
        prober.probe(url)

    assert caught.value.url == url
    assert url in str(caught.value)
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_server_that_never_answers_is_a_transfer_error_after_the_read_timeout() -> None:
    release = threading.Event()

    class Silent(QuietHandler):
        def do_HEAD(self) -> None:
            release.wait(timeout=10)

    with make_client(read_timeout=0.3) as client, serve(Silent) as base:
        try:
            with pytest.raises(TransferError, match="timed out"):
                SourceProber(client).probe(f"{base}/systems.json.gz")
        finally:
            release.set()


def test_an_empty_file_answers_416_and_sniffs_as_octet_stream(prober: SourceProber) -> None:
    class Empty(StaticFile):
        body = b""

    with serve(Empty) as base:
        result = prober.probe(f"{base}/empty.bin")
        with pytest.raises(UnexpectedContentError, match=OCTET_STREAM):
            prober.probe(f"{base}/empty.json.gz")

    assert result.content_length == 0
    assert result.mime_type == OCTET_STREAM


@pytest.mark.parametrize(
    ("status", "content_range", "complaint"),
    [
        (HTTPStatus.PARTIAL_CONTENT, "bytes lots", "malformed Content-Range"),
        (HTTPStatus.PARTIAL_CONTENT, None, "without a Content-Range"),
        (HTTPStatus.PARTIAL_CONTENT, "bytes 512-515/4096", "asked for bytes=0-1023"),
        (HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "bytes */4096", "refused bytes=0-1023"),
    ],
)
def test_a_ranged_answer_that_does_not_fit_the_request_is_a_probe_error(
    prober: SourceProber, status: HTTPStatus, content_range: str | None, complaint: str
) -> None:
    class BadRanges(RefusesHead405):
        def do_GET(self) -> None:
            body = b"\x1f\x8b\x08\x00" if status == HTTPStatus.PARTIAL_CONTENT else b""
            self.send_response(status)
            if content_range is not None:
                self.send_header("Content-Range", content_range)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with (
        serve(BadRanges) as base,
        pytest.raises((ProbeError, ProtocolError), match=re.escape(complaint)),
    ):
        prober.probe(f"{base}/systems.json.gz")


def test_a_head_length_contradicted_by_content_range_yields_to_content_range(
    prober: SourceProber,
) -> None:
    class WrongHeadLength(StaticFile):
        def do_HEAD(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serve(WrongHeadLength) as base:
        result = prober.probe(f"{base}/systems.json.gz")

    assert result.content_length == len(GZIP_BODY)


@pytest.mark.parametrize("url", ["ftp://example.com/systems.json.gz", "systems.json.gz", "http://"])
def test_a_url_that_is_not_absolute_http_is_a_usage_error(prober: SourceProber, url: str) -> None:
    with pytest.raises(InvalidURLError):
        prober.probe(url)
