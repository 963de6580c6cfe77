"""The streaming core of every regime: conditional GET, raw bytes into a FileSink, check, rename."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from ed_extractor.errors import (
    IncompleteBodyError,
    StorageError,
    TransferError,
    VerificationError,
)
from ed_extractor.hashing import FileSink
from ed_extractor.http import error_from_httpx
from ed_extractor.paths import part_path
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.overlap import ChunkWorker


def transfer(
    client: httpx.Client,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
) -> DownloadResult:
    """GET ``request.url`` (conditionally); store the raw body atomically at ``final_path``."""
    headers = {"Accept-Encoding": "identity"}
    if request.if_none_match:
        headers["If-None-Match"] = request.if_none_match
    if request.if_modified_since:
        headers["If-Modified-Since"] = request.if_modified_since
    try:
        with client.stream("GET", request.url, headers=headers) as response:
            if response.status_code == httpx.codes.NOT_MODIFIED:
                return DownloadResult(
                    status="unchanged",
                    final_url=str(response.url),
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                )
            if response.status_code != httpx.codes.OK:
                raise TransferError(
                    request.url,
                    f"HTTP {response.status_code} {response.reason_phrase}",
                    status_code=response.status_code,
                )
            return _store_body(response, request, check, progress)
    except httpx.HTTPError as exc:
        raise error_from_httpx(request.url, exc) from exc


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise TransferError(str(response.request.url), f"invalid Content-Length {value!r}")
    return int(value)


def _open_sink(path: Path) -> FileSink:
    try:
        return FileSink(path)
    except OSError as exc:
        raise StorageError(path, f"cannot create file ({exc.strerror or exc})") from exc


def _store_body(
    response: httpx.Response,
    request: DownloadRequest,
    check: ContentCheck | None,
    progress: ProgressReporter,
) -> DownloadResult:
    url = request.url
    length = _content_length(response)
    part = part_path(request.final_path)
    sink = _open_sink(part)
    writer = ChunkWorker(sink.write, name="sink")
    checker = ChunkWorker(check.feed, name="check") if check is not None else None
    progress.start(request.name, length)
    received = 0
    try:
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
                if request.max_bytes is not None and received > request.max_bytes:
                    raise TransferError(url, f"body exceeds max_bytes ({request.max_bytes})")
                writer.put(chunk)
                if checker is not None:
                    checker.put(chunk)
                progress.advance(len(chunk))
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            expected = "?" if length is None else str(length)
            raise IncompleteBodyError(
                url, f"connection lost after {received} of {expected} bytes ({exc})"
            ) from exc
        if length is not None and received != length:
            raise IncompleteBodyError(
                url, f"body has {received} bytes but Content-Length said {length}"
            )
        writer.close()
        if checker is not None:
            checker.close()
        summary = check.finish() if check is not None else ContentSummary()
        digest = sink.finish(fsync=True)
    except OSError as exc:
        _stop_workers(writer, checker)
        _discard(sink, part)
        raise StorageError(part, f"cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        _stop_workers(writer, checker)
        _discard(sink, part)
        raise
    finally:
        progress.stop()
    if request.expect_sha256 is not None and digest != request.expect_sha256.lower():
        part.unlink(missing_ok=True)
        raise VerificationError(
            url, f"SHA-256 mismatch: expected {request.expect_sha256}, got {digest}"
        )
    _move_into_place(part, request.final_path)
    return DownloadResult(
        status="downloaded",
        final_url=str(response.url),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        path=request.final_path,
        bytes=received,
        sha256=digest,
        bytes_transferred=received,
        summary=summary,
    )


def _stop_workers(*workers: ChunkWorker | None) -> None:
    for worker in workers:
        if worker is not None:
            worker.cancel()


def _discard(sink: FileSink, part: Path) -> None:
    sink.abort()
    part.unlink(missing_ok=True)


def _move_into_place(part: Path, final_path: Path) -> None:
    """Rename the verified part file over the final name and make the rename durable."""
    try:
        os.replace(part, final_path)
        directory = os.open(final_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise StorageError(final_path, f"cannot move into place ({exc.strerror or exc})") from exc


__all__ = ["transfer"]
