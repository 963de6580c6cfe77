"""One run's hold on a destination: the folder locked, its manifest open, the shared HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from ed_extractor.http import make_client
from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.lock import destination_lock
from ed_extractor.services.file_transfer.range_engine import connections_per_file

if TYPE_CHECKING:
    from ed_extractor.services.s3.access import S3Access
    from ed_extractor.settings import Settings


@contextmanager
def destination_session(settings: Settings) -> Iterator[tuple[ManifestStore, httpx.Client]]:
    """Create ``settings.dest`` if needed, lock it, and yield its manifest and an HTTP client."""
    settings.dest.mkdir(parents=True, exist_ok=True)
    with (
        destination_lock(settings.dest, wait_s=settings.lock_wait_s),
        ManifestStore(settings.manifest_path) as store,
        make_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_redirects=settings.max_redirects,
            connections_per_file=connections_per_file(settings.connections),
        ) as client,
    ):
        yield store, client


def s3_access(settings: Settings) -> S3Access:
    """The S3 access of a run: the ``ED_EXTRACTOR_S3_*`` settings (credentials: the AWS chain)."""
    from ed_extractor.services.s3.access import S3Access, S3Config

    config = S3Config(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        anonymous=settings.s3_anonymous,
    )
    return S3Access(config)
