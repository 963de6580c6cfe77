"""One run's hold on a destination: its folder (or scratch) locked, manifest, HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ed_extractor.errors import UsageError
from ed_extractor.http import make_client
from ed_extractor.manifest import Manifest, ManifestStore
from ed_extractor.pipeline.lock import destination_lock
from ed_extractor.services.file_transfer.base import Destination
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER
from ed_extractor.services.file_transfer.range_engine import connections_per_file

if TYPE_CHECKING:
    from ed_extractor.manifest.object_store import ObjectManifestStore
    from ed_extractor.services.s3.access import S3Access
    from ed_extractor.services.s3.upload import ObjectStore
    from ed_extractor.settings import Settings


@dataclass(frozen=True)
class DestinationSession:
    """What a run holds while it works: the manifest, the HTTP client, where files land."""

    store: Manifest
    client: httpx.Client
    destination: Destination
    s3: S3Access


@contextmanager
def destination_session(settings: Settings) -> Iterator[DestinationSession]:
    """Lock ``settings.dest`` (the folder, or an object store's scratch), open its manifest.

    An object-store destination's bucket is checked first (DestinationError: missing, refused),
    and its unfinished uploads older than ``upload_max_age_s`` are aborted.
    """
    settings.dest.mkdir(parents=True, exist_ok=True)
    s3 = s3_access(settings)
    with (
        destination_lock(settings.dest, wait_s=settings.lock_wait_s),
        make_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_redirects=settings.max_redirects,
            connections_per_file=connections_per_file(settings.connections),
        ) as client,
        open_manifest(settings, client, s3=s3) as store,
    ):
        yield DestinationSession(store, client, destination_for(settings, client, s3), s3)


def destination_for(settings: Settings, client: httpx.Client, s3: S3Access) -> Destination:
    """Where the run's files land: the folder, or the object store (see ``object_store``)."""
    if settings.object_dest is None:
        return LOCAL_FOLDER
    return object_store(settings, client, s3)


def object_store(settings: Settings, client: httpx.Client, s3: S3Access) -> ObjectStore:
    """The run's object-store destination: writes checked, stale uploads aborted.

    Its bucket was checked when the manifest opened.
    """
    from ed_extractor.services.s3.bucket import Bucket
    from ed_extractor.services.s3.upload import ObjectStore

    prefix = settings.object_dest
    assert prefix is not None
    store = ObjectStore(Bucket(s3, client, prefix.bucket), prefix, settings.dest)
    store.check_writable()
    store.abort_stale_uploads(settings.upload_max_age_s)
    return store


def s3_access(settings: Settings) -> S3Access:
    """The S3 access of a run: the ``ED_EXTRACTOR_S3_*`` settings (credentials: the AWS chain)."""
    from ed_extractor.services.s3.access import S3Access, S3Config

    config = S3Config(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        anonymous=settings.s3_anonymous,
    )
    return S3Access(config)


@contextmanager
def object_manifest_session(settings: Settings) -> Iterator[ObjectManifestStore]:
    """The object-store destination's manifest and a client of its own, for reading it.

    UsageError when nothing was ever recorded there (as for a folder without a manifest).
    """
    with (
        make_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_redirects=settings.max_redirects,
        ) as client,
        open_object_manifest(settings, client) as store,
    ):
        if not store.exists():
            raise UsageError(f"no manifest at {store.url}")
        yield store


def open_manifest(
    settings: Settings, client: httpx.Client, *, s3: S3Access | None = None, create: bool = True
) -> Manifest:
    """The destination's manifest: SQLite for a folder, objects for ``s3://BUCKET/PREFIX``.

    An object store's records live under ``PREFIX/_manifest/``; its bucket is checked first.
    ``create=False`` refuses a folder without a manifest file (UsageError). For an object store
    ``s3`` is the run's S3 access (default: one from the settings); a missing bucket or refused
    credentials are DestinationError (exit 2).
    """
    if settings.object_dest is not None:
        return open_object_manifest(settings, client, s3=s3)
    path = settings.manifest_path
    if not create and not path.is_file():
        raise UsageError(f"no manifest at {path}")
    return ManifestStore(path, create=create, journal=settings.manifest_journal)


def open_object_manifest(
    settings: Settings, client: httpx.Client, *, s3: S3Access | None = None
) -> ObjectManifestStore:
    """The manifest of the object-store destination, once its bucket answered (one HEAD).

    ``--manifest`` names a SQLite file and has no meaning for an object store: UsageError.
    """
    from ed_extractor.manifest.object_store import ObjectManifestStore
    from ed_extractor.services.s3.bucket import Bucket

    destination = settings.object_dest
    if destination is None:
        raise UsageError("the destination is a folder, not s3://BUCKET/PREFIX")
    if settings.manifest is not None:
        raise UsageError(
            f"--manifest (ED_EXTRACTOR_MANIFEST) names a SQLite file; the manifest of "
            f"{destination.url} lives under {destination.url}/_manifest/"
        )
    bucket = Bucket(s3 or s3_access(settings), client, destination.bucket)
    bucket.check_bucket()
    return ObjectManifestStore(bucket, destination)
