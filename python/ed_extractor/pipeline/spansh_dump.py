"""Fetch dump sources: HEAD, skip what is unchanged, sniff, download through a regime, record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from ed_extractor.errors import DeadlineError, EdExtractorError, ManifestError
from ed_extractor.manifest import (
    AttemptStatus,
    Manifest,
    ManifestRecord,
    Regime,
)
from ed_extractor.paths import part_path, resolve_inside
from ed_extractor.pipeline.concurrency import completed
from ed_extractor.retry import RetryPolicy
from ed_extractor.services.file_transfer import (
    Connections,
    DownloadRequest,
    DownloadResult,
    ProgressReporter,
)
from ed_extractor.services.file_transfer.base import Destination
from ed_extractor.services.file_transfer.context import DownloadContext
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER
from ed_extractor.services.source_probe.models import HeadInfo, ProbeResult
from ed_extractor.services.source_probe.prober import SourceProber
from ed_extractor.services.source_probe.sniff import BITTORRENT
from ed_extractor.services.sources import Sources
from ed_extractor.services.sources.torrent_session import TorrentOptions
from ed_extractor.settings import Settings, SourceSpec

if TYPE_CHECKING:
    from ed_extractor.services.s3.access import S3Access

log = logging.getLogger(__name__)


class SourceOutcome(BaseModel):
    """What happened to one source: the object ``fetch --json`` and ``run --json`` print."""

    name: str
    url: str
    status: AttemptStatus
    path: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    blake3: str | None = None
    regime: str | None = None
    mime_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    elapsed_s: float
    shard: str | None = Field(default=None, description="'I/N' in a sharded run, else left out")

    @model_serializer(mode="wrap")
    def _leave_out_no_shard(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An unsharded run's objects have no ``shard`` key at all (not ``"shard": null``)."""
        fields: dict[str, Any] = handler(self)
        if fields.get("shard") is None:
            fields.pop("shard", None)
        return fields

    @classmethod
    def from_record(
        cls, record: ManifestRecord, status: AttemptStatus, elapsed_s: float
    ) -> SourceOutcome:
        """The outcome of a source whose current file is ``record``."""
        return cls(
            name=record.name,
            url=record.url,
            status=status,
            path=record.path,
            bytes=record.bytes,
            sha256=record.sha256,
            blake3=record.blake3,
            regime=record.regime,
            mime_type=record.mime_type,
            etag=record.etag,
            last_modified=record.last_modified,
            elapsed_s=round(elapsed_s, 3),
        )


def torrent_options(settings: Settings) -> TorrentOptions:
    """How torrent sources meet the swarm, from the run's ``ED_EXTRACTOR_BT_*`` settings."""
    return TorrentOptions(
        listen=settings.bt_listen,
        peers=tuple(p.strip() for p in settings.bt_peers.split(",") if p.strip()),
        dht=settings.bt_dht,
        lsd=settings.bt_lsd,
        upnp=settings.bt_upnp,
        natpmp=settings.bt_natpmp,
        utp=settings.bt_utp,
        stall_s=settings.bt_stall_s,
        seed_s=settings.bt_seed_s,
    )


def validators_match(record: ManifestRecord, head: HeadInfo) -> bool:
    """True when the server's HEAD describes the recorded file (ETag, else Last-Modified; size)."""
    if head.content_length is not None and head.content_length != record.bytes:
        return False
    if head.etag and record.etag:
        return head.etag == record.etag and not head.etag.startswith("W/")
    if head.last_modified and record.last_modified:
        return head.last_modified == record.last_modified
    return False


def _download_context(s3: S3Access | None, torrent: TorrentOptions | None) -> DownloadContext:
    """The content regimes and sources of a run: S3 access, and torrents with the options given."""
    options = torrent if torrent is not None else torrent_options(Settings.from_environment())
    return DownloadContext(sources=Sources(s3=s3, torrent=options))


class DumpFetcher:
    """Fetches sources into one destination folder and records them in its manifest.

    Without a ``context``, torrents meet the swarm with ``torrent`` (default: the options the
    environment's ``ED_EXTRACTOR_BT_*`` settings give).
    """

    def __init__(
        self,
        client: httpx.Client,
        store: Manifest,
        dest: Path,
        *,
        progress: Callable[[], ProgressReporter],
        context: DownloadContext | None = None,
        verify: bool = True,
        blake3: bool = True,
        retry: RetryPolicy | None = None,
        s3: S3Access | None = None,
        connections: Connections = 1,
        torrent: TorrentOptions | None = None,
        destination: Destination = LOCAL_FOLDER,
    ) -> None:
        self._client = client
        self._destination = destination
        self._connections = connections
        self._store = store
        self._dest = dest
        self._context = context or _download_context(s3, torrent)
        self._prober = SourceProber(client, sources=self._context.sources)
        self._progress = progress
        self._verify = verify
        self._blake3 = blake3
        self._retry = retry or RetryPolicy()

    def fetch_all(
        self, specs: Iterable[SourceSpec], *, parallel: int = 1
    ) -> Iterator[SourceOutcome]:
        """Fetch the sources, up to ``parallel`` at once, yielding each outcome as it finishes.

        One failing source does not stop the others. Concurrent sources share the client's
        connection pool and the manifest store (whose methods take turns).
        """
        pending = list(specs)
        if parallel <= 1 or len(pending) <= 1:
            yield from map(self.fetch, pending)
        else:
            yield from completed(self.fetch, pending, workers=parallel, name="source")

    def fetch(self, spec: SourceSpec) -> SourceOutcome:
        """Bring one source up to date; never raises for a per-source failure."""
        started = time.monotonic()
        try:
            self._check_deadline(spec)
            outcome = self._retry.retrying()(self._fetch, spec, started)
        except EdExtractorError as exc:
            elapsed = time.monotonic() - started
            log.error("source failed", extra={"source": spec.name, "error": str(exc)})
            try:
                self._store.record_attempt(
                    spec.name, spec.url, "failed", error=str(exc), elapsed_s=elapsed
                )
            except ManifestError as manifest_error:  # e.g. the disk that failed the download
                log.error("cannot record the failure: %s", manifest_error)
            return SourceOutcome(
                name=spec.name,
                url=spec.url,
                status="failed",
                error=str(exc),
                elapsed_s=round(elapsed, 3),
            )
        log.info(
            "source %s",
            outcome.status,
            extra={"source": outcome.name, "bytes": outcome.bytes, "elapsed_s": outcome.elapsed_s},
        )
        return outcome

    def _check_deadline(self, spec: SourceSpec) -> None:
        deadline = self._retry.deadline
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineError(spec.url, "run deadline reached before this source started")

    def _fetch(self, spec: SourceSpec, started: float) -> SourceOutcome:
        final_path = resolve_inside(self._dest, spec.name)
        # The part file is checked too: a symlinked <name>.part must not lead out of dest.
        resolve_inside(self._dest, part_path(final_path).name)
        head = self._prober.head(spec.url)
        if head is None:  # peers, not a server, to ask: the payload is sniffed once it is here
            return self._download(spec, final_path, None, BITTORRENT, None, started)
        record = self._store.get(spec.name)
        intact = record if record is not None and self._holds(record, final_path) else None
        if intact is not None and spec.expect_sha256 not in (None, intact.sha256):
            intact = None
        if intact is not None and head is not None and validators_match(intact, head):
            return self._unchanged(intact, started)
        probe = self._prober.sample(spec.url, head, expect=spec.expect)
        return self._download(spec, final_path, probe, probe.mime_type, intact, started)

    def _holds(self, record: ManifestRecord, final_path: Path) -> bool:
        """True when the recorded file is still stored whole at the destination."""
        return self._destination.holds(final_path, record.bytes, record.sha256)

    def _download(
        self,
        spec: SourceSpec,
        final_path: Path,
        probe: ProbeResult | None,
        mime_type: str,
        intact: ManifestRecord | None,
        started: float,
    ) -> SourceOutcome:
        regime = self._context.select_for(spec.url, mime_type)
        request = DownloadRequest(
            name=spec.name,
            url=spec.url,
            final_path=final_path,
            expected_length=probe.content_length if probe else None,
            expected_etag=probe.etag if probe else None,
            expected_last_modified=probe.last_modified if probe else None,
            ranges_supported=probe.is_range_supported if probe else False,
            connections=spec.connections or self._connections,
            if_none_match=intact.etag if intact else None,
            if_modified_since=intact.last_modified if intact else None,
            expect_sha256=spec.expect_sha256,
            blake3=self._blake3,
            verify=self._verify and spec.verify,
            max_bytes=spec.max_bytes,
            deadline=self._retry.deadline,
            peers=tuple(spec.peers),
            recorded_with=self._store.with_etag,
            destination=self._destination,
        )
        result = regime.download(self._client, request, self._progress())
        if result.files:
            return self._record_files(spec, result, regime.name, started)
        if result.status == "unchanged" and intact is not None:
            return self._unchanged(intact, started)
        return self._record(spec, result, regime.name, mime_type, started)

    def _record_files(
        self, spec: SourceSpec, result: DownloadResult, regime: Regime, started: float
    ) -> SourceOutcome:
        """Record each file of a download that stored several under their own names."""
        records = [
            ManifestRecord(
                name=file.name,
                url=spec.url,
                final_url=result.final_url,
                path=self._destination.location(file.path),
                bytes=file.bytes,
                sha256=file.sha256,
                blake3=file.blake3,
                regime=regime,
                mime_type=file.mime_type,
                etag=result.etag,
                uncompressed_bytes=file.summary.uncompressed_bytes,
                records=file.summary.records,
                downloaded_at=datetime.now(UTC),
            )
            for file in result.files
        ]
        elapsed = time.monotonic() - started
        for record, file in zip(records, result.files, strict=True):
            if result.status == "unchanged":
                self._store.record_attempt(record.name, spec.url, "unchanged", elapsed_s=elapsed)
            else:
                self._store.put(record, elapsed_s=elapsed, bytes_transferred=file.bytes_transferred)
        if len(records) == 1:
            return SourceOutcome.from_record(records[0], result.status, elapsed)
        return SourceOutcome(
            name=spec.name,
            url=spec.url,
            status=result.status,
            path=self._destination.location(result.path or self._dest / spec.name),
            bytes=sum(record.bytes for record in records),
            regime=regime,
            etag=result.etag,
            elapsed_s=round(elapsed, 3),
        )

    def _unchanged(self, record: ManifestRecord, started: float) -> SourceOutcome:
        elapsed = time.monotonic() - started
        self._store.record_attempt(record.name, record.url, "unchanged", elapsed_s=elapsed)
        return SourceOutcome.from_record(record, "unchanged", elapsed)

    def _record(
        self,
        spec: SourceSpec,
        result: DownloadResult,
        regime: Regime,
        mime_type: str,
        started: float,
    ) -> SourceOutcome:
        assert result.path is not None
        assert result.sha256 is not None
        record = ManifestRecord(
            name=spec.name,
            url=spec.url,
            final_url=result.final_url,
            path=self._destination.location(result.path),
            bytes=result.bytes,
            sha256=result.sha256,
            blake3=result.blake3,
            regime=regime,
            mime_type=mime_type,
            etag=result.etag,
            last_modified=result.last_modified,
            uncompressed_bytes=result.summary.uncompressed_bytes,
            records=result.summary.records,
            downloaded_at=datetime.now(UTC),
        )
        elapsed = time.monotonic() - started
        self._store.put(record, elapsed_s=elapsed, bytes_transferred=result.bytes_transferred)
        return SourceOutcome.from_record(record, "downloaded", elapsed)
