"""Fetch Spansh system dumps (``/api/dump/{id64}``) into ``<dest>/api/dump/<id64>.json``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from ed_extractor.errors import EdExtractorError, ManifestError, VerificationError
from ed_extractor.manifest import Manifest, ManifestRecord
from ed_extractor.paths import resolve_inside
from ed_extractor.pipeline.spansh_dump import SourceOutcome
from ed_extractor.services.api_client import ApiAnswer, ApiFetcher, JsonDocumentCheck
from ed_extractor.services.file_transfer.base import Destination
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER, LandedFile, store_chunks

log = logging.getLogger(__name__)

MAX_ID64 = 2**64 - 1
DUMP_MIME_TYPE = "application/json"


def parse_id64(text: str) -> int:
    """``text`` as an unsigned 64-bit integer (decimal digits only); ValueError otherwise."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"not an id64 (unsigned 64-bit integer): {text!r}")
    value = int(text)
    if value > MAX_ID64:
        raise ValueError(f"id64 out of range (above 2**64 - 1): {text!r}")
    return value


def dump_name(id64: int) -> str:
    """The manifest name (and path inside dest) of a system's dump."""
    return f"api/dump/{id64}.json"


def checked_json_object(url: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` passed on while JsonDocumentCheck (bounded memory) finds one JSON object.

    VerificationError as soon as the body is not a JSON object, or not JSON at all.
    """
    check = JsonDocumentCheck()
    try:
        for chunk in chunks:
            check.feed(chunk)
            if check.first not in (None, ord("{")):
                raise VerificationError(url, "the dump is not a JSON object")
            yield chunk
        check.finish()
    except ValueError as exc:  # the JSON check's verdict
        raise VerificationError(url, f"the answer is not JSON ({exc})") from None


class SystemDumpFetcher:
    """Fetches system dumps through an ApiFetcher into ``dest`` and records them in ``store``.

    Each body streams to disk (capped by the fetcher's ``max_bytes``), so memory stays bounded
    whatever a server sends; ``blake3`` records each file's BLAKE3 beside its SHA-256.
    """

    def __init__(
        self,
        api: ApiFetcher,
        store: Manifest,
        dest: Path,
        *,
        blake3: bool = True,
        destination: Destination = LOCAL_FOLDER,
    ) -> None:
        self._api = api
        self._store = store
        self._dest = dest
        self._blake3 = blake3
        self._destination = destination

    def fetch_all(self, ids: Iterable[int]) -> Iterator[SourceOutcome]:
        """Fetch each id in turn; one failing id does not stop the others."""
        for id64 in ids:
            yield self.fetch(id64)

    def fetch(self, id64: int) -> SourceOutcome:
        """Fetch one system's dump; never raises for a failure of this id."""
        name = dump_name(id64)
        url = self._api.url(f"api/dump/{id64}")
        started = time.monotonic()
        try:
            record = self._fetch(name, url)
        except EdExtractorError as exc:
            elapsed = time.monotonic() - started
            log.error("dump failed", extra={"source": name, "error": str(exc)})
            try:
                self._store.record_attempt(name, url, "failed", error=str(exc), elapsed_s=elapsed)
            except ManifestError as manifest_error:
                log.error("cannot record the failure: %s", manifest_error)
            return SourceOutcome(
                name=name, url=url, status="failed", error=str(exc), elapsed_s=round(elapsed, 3)
            )
        elapsed = time.monotonic() - started
        self._store.put(record, elapsed_s=elapsed, bytes_transferred=record.bytes)
        log.info("dump downloaded", extra={"source": name, "bytes": record.bytes})
        return SourceOutcome.from_record(record, "downloaded", elapsed)

    def _fetch(self, name: str, url: str) -> ManifestRecord:
        final = resolve_inside(self._dest, name)

        def land(answer: ApiAnswer, chunks: Iterator[bytes]) -> tuple[ApiAnswer, LandedFile]:
            body = checked_json_object(url, chunks)
            landing = self._destination.landing(final, {"source-url": url})
            return answer, store_chunks(final, body, blake3=self._blake3, landing=landing)

        answer, stored = self._api.stream("GET", url, land)
        return ManifestRecord(
            name=name,
            url=url,
            final_url=answer.final_url,
            path=self._destination.location(final),
            bytes=stored.bytes,
            sha256=stored.sha256,
            blake3=stored.blake3,
            regime="json",
            mime_type=DUMP_MIME_TYPE,
            etag=answer.etag,
            last_modified=answer.last_modified,
            uncompressed_bytes=stored.bytes,
            records=1,
            downloaded_at=datetime.now(UTC),
        )
