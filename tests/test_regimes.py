"""Download regimes against a real loopback server: raw bytes on disk, checks, atomic renames."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ed_extractor.errors import IncompleteBodyError, TransferError, VerificationError
from ed_extractor.http import make_client
from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer import DownloadRequest, DownloadResult
from ed_extractor.services.file_transfer.base import SilentProgress
from ed_extractor.services.file_transfer.context import DownloadContext, SourceDownload
from ed_extractor.services.file_transfer.regimes import (
    BinaryRegime,
    GzipRegime,
    JsonRegime,
    ZstdRegime,
)
from ed_extractor.services.file_transfer.regimes import gzip as gzip_regime
from ed_extractor.services.file_transfer.regimes.zstd import zstd
from ed_extractor.services.source_probe.models import ProbeResult
from tests.backends import BACKENDS, gzip_verifier
from tests.httpd import QuietHandler, serve

SPANSH_RECORDS = [
    {"id64": n, "name": f"Sys {n}", "coords": {"x": n, "y": 0, "z": -n}} for n in range(500)
]
SPANSH_JSON = ("[\n" + ",\n".join(json.dumps(r) for r in SPANSH_RECORDS) + "\n]\n").encode()
SPANSH_GZ = gzip.compress(SPANSH_JSON, mtime=0)


def handler_serving(
    body: bytes,
    *,
    declared_length: int | None = None,
    content_encoding: str | None = None,
    etag: str = '"v1"',
    status: int = 200,
) -> type[QuietHandler]:
    """A handler that answers every GET with ``body`` (optionally lying about its length)."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", "Tue, 24 Nov 2026 03:00:00 GMT")
            if content_encoding:
                self.send_header("Content-Encoding", content_encoding)
            length = len(body) if declared_length is None else declared_length
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    return Handler


@pytest.fixture(params=BACKENDS)
def gzip_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the test once per gzip verifier: native, then ISA-L (the pure-Python backend's)."""
    monkeypatch.setattr(gzip_regime, "new_verifier", gzip_verifier(request.param))
    return str(request.param)


def download(regime: BinaryRegime, url: str, dest: Path, **options: Any) -> DownloadResult:
    """``url`` from its source (HTTP here) through ``regime``'s content check."""
    request = DownloadRequest(name="dump", url=url, final_path=dest / "dump.json.gz", **options)
    context = DownloadContext()
    strategy = SourceDownload(context.sources.for_url(url), regime, context, regime.name)
    with make_client(read_timeout=10) as client:
        return strategy.download(client, request, SilentProgress())


@pytest.mark.usefixtures("gzip_backend")
def test_gzip_regime_stores_the_raw_bytes_and_counts_records(tmp_path: Path) -> None:
    with serve(handler_serving(SPANSH_GZ)) as base:
        result = download(GzipRegime(), f"{base}/dump.json.gz", tmp_path)
    stored = (tmp_path / "dump.json.gz").read_bytes()
    assert stored == SPANSH_GZ
    assert result.sha256 == hashlib.sha256(SPANSH_GZ).hexdigest()
    assert result.summary.uncompressed_bytes == len(SPANSH_JSON)
    assert result.summary.records == len(SPANSH_RECORDS)
    assert result.etag == '"v1"'
    assert not part_path(tmp_path / "dump.json.gz").exists()


def test_content_encoding_gzip_is_not_decoded_on_disk(tmp_path: Path) -> None:
    with serve(handler_serving(SPANSH_GZ, content_encoding="gzip")) as base:
        download(GzipRegime(), f"{base}/dump.json.gz", tmp_path)
    assert (tmp_path / "dump.json.gz").read_bytes() == SPANSH_GZ


@pytest.mark.usefixtures("gzip_backend")
def test_multi_member_gzip_is_accepted(tmp_path: Path) -> None:
    body = gzip.compress(b"[\n{}\n,", mtime=0) + gzip.compress(b"{}\n]\n", mtime=0)
    with serve(handler_serving(body)) as base:
        result = download(GzipRegime(), f"{base}/dump.json.gz", tmp_path)
    assert result.summary.uncompressed_bytes == 11


def test_body_cut_short_keeps_the_previous_good_file(tmp_path: Path) -> None:
    final = tmp_path / "dump.json.gz"
    final.write_bytes(b"previous good version")
    with (
        serve(handler_serving(SPANSH_GZ[:1000], declared_length=len(SPANSH_GZ))) as base,
        pytest.raises(IncompleteBodyError, match=f"of {len(SPANSH_GZ)} bytes"),
    ):
        download(GzipRegime(), f"{base}/dump.json.gz", tmp_path)
    assert final.read_bytes() == b"previous good version"
    assert not part_path(final).exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (SPANSH_GZ[:100] + bytes([SPANSH_GZ[100] ^ 0xFF]) + SPANSH_GZ[101:], "corrupt gzip"),
        (SPANSH_GZ[:-8] + b"\0" * 8, "corrupt gzip"),  # CRC32 and length trailer zeroed
        (SPANSH_GZ[: len(SPANSH_GZ) // 2], "truncated gzip"),
        (b"<html>challenge</html>", "corrupt gzip"),
    ],
    ids=["flipped-byte", "bad-trailer", "truncated", "not-gzip"],
)
@pytest.mark.usefixtures("gzip_backend")
def test_bad_gzip_fails_and_leaves_no_file(tmp_path: Path, body: bytes, message: str) -> None:
    with serve(handler_serving(body)) as base, pytest.raises(VerificationError, match=message):
        download(GzipRegime(), f"{base}/dump.json.gz", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_gzip_is_stored_when_verification_is_off(tmp_path: Path) -> None:
    body = SPANSH_GZ[: len(SPANSH_GZ) // 2]
    with serve(handler_serving(body)) as base:
        download(GzipRegime(), f"{base}/dump.json.gz", tmp_path, verify=False)
    assert (tmp_path / "dump.json.gz").read_bytes() == body


def test_json_regime_counts_records_and_rejects_an_unclosed_document(tmp_path: Path) -> None:
    with serve(handler_serving(SPANSH_JSON)) as base:
        result = download(JsonRegime(), f"{base}/dump.json", tmp_path)
    assert result.summary.records == len(SPANSH_RECORDS)
    cut = SPANSH_JSON[: SPANSH_JSON.rindex(b"\n{")]
    with serve(handler_serving(cut)) as base, pytest.raises(VerificationError, match="incomplete"):
        download(JsonRegime(), f"{base}/dump.json", tmp_path)
    assert json.loads((tmp_path / "dump.json.gz").read_bytes()) == SPANSH_RECORDS


def test_json_regime_rejects_html(tmp_path: Path) -> None:
    with (
        serve(handler_serving(b"<!doctype html><p>nope</p>")) as base,
        pytest.raises(VerificationError, match="not a JSON document"),
    ):
        download(JsonRegime(), f"{base}/dump.json", tmp_path)


def test_zstd_regime_checks_every_frame(tmp_path: Path) -> None:
    checksum: dict[int, int] = {zstd.CompressionParameter.checksum_flag: 1}
    body = zstd.compress(SPANSH_JSON, options=checksum) + zstd.compress(b"second frame")
    with serve(handler_serving(body)) as base:
        result = download(ZstdRegime(), f"{base}/dump.zst", tmp_path)
    assert result.summary.uncompressed_bytes == len(SPANSH_JSON) + 12
    with serve(handler_serving(body[:-20])) as base, pytest.raises(VerificationError, match="zstd"):
        download(ZstdRegime(), f"{base}/dump.zst", tmp_path)
    assert (tmp_path / "dump.json.gz").read_bytes() == body  # the good copy survives


def test_expected_sha256_mismatch_keeps_no_file(tmp_path: Path) -> None:
    with (
        serve(handler_serving(SPANSH_GZ)) as base,
        pytest.raises(VerificationError, match="SHA-256 mismatch"),
    ):
        download(GzipRegime(), f"{base}/dump.json.gz", tmp_path, expect_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_not_modified_transfers_no_body(tmp_path: Path) -> None:
    with serve(handler_serving(SPANSH_GZ)) as base:
        result = download(GzipRegime(), f"{base}/dump.json.gz", tmp_path, if_none_match='"v1"')
    assert result.status == "unchanged"
    assert list(tmp_path.iterdir()) == []


def test_error_status_is_a_transfer_error(tmp_path: Path) -> None:
    with (
        serve(handler_serving(b"gone", status=410)) as base,
        pytest.raises(TransferError, match="HTTP 410") as caught,
    ):
        download(BinaryRegime(), f"{base}/dump.json.gz", tmp_path)
    assert caught.value.status_code == 410


def test_max_bytes_stops_an_oversized_body(tmp_path: Path) -> None:
    with serve(handler_serving(SPANSH_GZ)) as base, pytest.raises(TransferError, match="max_bytes"):
        download(BinaryRegime(), f"{base}/dump.json.gz", tmp_path, max_bytes=100)
    assert list(tmp_path.iterdir()) == []


def _probe(mime_type: str) -> ProbeResult:
    return ProbeResult(
        url="http://x/y", final_url="http://x/y", status_code=206, mime_type=mime_type
    )


def test_context_selects_a_regime_by_sniffed_type_and_accepts_registrations() -> None:
    context = DownloadContext()
    assert isinstance(context.select(_probe("application/gzip")).content, GzipRegime)
    assert isinstance(context.select(_probe("application/json")).content, JsonRegime)
    assert isinstance(context.select(_probe("application/zstd")).content, ZstdRegime)
    assert type(context.select(_probe("application/x-ndjson")).content) is BinaryRegime
    context.register("application/x-ndjson", JsonRegime)
    assert isinstance(context.select(_probe("application/x-ndjson")).content, JsonRegime)
    assert context.select(_probe("application/gzip")).name == "gzip"  # HTTP: the content's name


def test_the_source_comes_from_the_url_kind_and_torrent_metainfo_means_the_swarm() -> None:
    context = DownloadContext()
    kinds = {
        "http://x/y.json.gz": ("application/gzip", "http", "gzip"),
        "s3://bucket/y.json.gz": ("application/gzip", "s3", "s3-multipart"),
        "magnet:?xt=urn:btih:" + "0" * 40: ("application/octet-stream", "bittorrent", "bittorrent"),
        "https://x/y.torrent": ("application/x-bittorrent", "bittorrent", "bittorrent"),
    }
    for url, (mime_type, kind, regime) in kinds.items():
        selected = context.select_for(url, mime_type)
        assert (selected.source.kind, selected.name) == (kind, regime), url
    s3 = context.select_for("s3://bucket/y.json.gz", "application/gzip")
    assert isinstance(s3.content, GzipRegime)  # an S3 object gets the check of its type too


def test_connection_refused_is_a_transfer_error(tmp_path: Path) -> None:
    with serve(handler_serving(b"")) as base:
        dead = base
    with pytest.raises(TransferError, match="cannot connect"):
        download(BinaryRegime(), f"{dead}/x", tmp_path)
