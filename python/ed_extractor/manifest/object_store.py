"""The manifest in the object store: one JSON object per record under ``PREFIX/_manifest/``.

Layout (readable without this program, e.g. by DuckDB's ``read_json_auto`` or Spark's JSON
reader; no key holds a ``:``, which Hadoop paths refuse):

- ``_manifest/files/<name>.json``: the current record of one file (ManifestRecord's fields and
  ``stored_object``: the ETag and checksums the object had when it was recorded). A put replaces
  only that object, so writers of different names never touch each other's records.
- ``_manifest/attempts/<name>/<UTC stamp>-<host>-<pid>-<random>.json``: one attempt each
  (AttemptRecord's fields), append-only: concurrent writers (the pods of an Indexed Job) never
  lose one another's entries, and a name's history is one listing of its own folder.
- ``_manifest/verifications/<name>/...``: one re-check each (VerificationRecord's fields), likewise.

A record object that cannot be read as one is skipped with a warning (a get treats it as absent):
one damaged object never stops a run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ed_extractor.errors import ManifestError, TransferError
from ed_extractor.manifest.models import (
    AttemptRecord,
    AttemptStatus,
    HashAlgorithm,
    ManifestRecord,
    VerificationRecord,
    VerificationStatus,
)
from ed_extractor.services.s3.bucket import Bucket, ObjectHead, ObjectTooLargeError
from ed_extractor.services.s3.location import S3Prefix, is_s3_url, parse_s3_url

log = logging.getLogger(__name__)

MANIFEST_FOLDER: Final = "_manifest"
FILES: Final = "files"
ATTEMPTS: Final = "attempts"
VERIFICATIONS: Final = "verifications"
_JSON: Final = ".json"
_CONTENT_TYPE: Final = "application/json"
_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"  # sorts as it reads; no ':' (Hadoop paths refuse it)
_STORED_OBJECT: Final = "stored_object"
_NOT_A_HOST: Final = re.compile(r"[^A-Za-z0-9-]+")

Entry = TypeVar("Entry", AttemptRecord, VerificationRecord)
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class StoredObject:
    """What the data object was when its record was written: the store's own validators."""

    etag: str
    checksums: dict[str, str] = field(default_factory=dict)  # crc64nvme... -> base64


@dataclass(frozen=True)
class ObjectRecord:
    """A current record with what its object was when recorded (None: no object then)."""

    record: ManifestRecord
    stored: StoredObject | None


def _unset_optional(record: ManifestRecord) -> set[str]:
    """The newer optional fields ``record`` leaves unset (not written: older readers refuse)."""
    return {"coverage_s"} if record.coverage_s is None else set()


def _writer() -> str:
    """This process's part of a log entry's key: host and pid."""
    host = _NOT_A_HOST.sub("-", socket.gethostname()).strip("-")[:63] or "host"
    return f"{host}-{os.getpid()}"


def _entry_id(at: datetime) -> int:
    """A log entry's id: microseconds since the epoch (newer entries have larger ids)."""
    return int(at.timestamp() * 1_000_000)


def _stored_object(head: ObjectHead | None) -> dict[str, Any] | None:
    return None if head is None else {"etag": head.etag, "checksums": head.checksums}


class ObjectManifestStore:
    """The manifest of the object-store destination ``prefix``, kept in ``bucket``.

    It holds no state but the bucket (whose client belongs to the caller), so the threads of a
    run, and the processes of several pods, may use it at once. S3 failures are ManifestError
    naming the object.
    """

    def __init__(self, bucket: Bucket, prefix: S3Prefix) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._root = prefix.key(MANIFEST_FOLDER)
        self._writer = _writer()

    @property
    def url(self) -> str:
        """``s3://BUCKET/PREFIX/_manifest/``, for messages."""
        return self.bucket.url(f"{self._root}/")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the HTTP client is the caller's."""

    def exists(self) -> bool:
        """True when anything was ever recorded under ``_manifest/``."""
        with self._errors("list", self.url):
            return next(iter(self.bucket.list(f"{self._root}/", page_size=1)), None) is not None

    def get(self, name: str) -> ManifestRecord | None:
        """The current record of ``name``; None if never recorded or its object is corrupt."""
        found = self._read_record(self._file_key(name), name)
        return None if found is None else found.record

    def with_etag(self, etag: str) -> list[ManifestRecord]:
        """The current records whose validator is ``etag``, ordered by name."""
        return [record for record in self.records() if record.etag == etag]

    def records(self) -> list[ManifestRecord]:
        """Every current record, ordered by name (a corrupt record is skipped, with a warning)."""
        return [found.record for found in self.object_records()]

    def object_records(self) -> list[ObjectRecord]:
        """Every current record with its object's recorded validators, ordered by name."""
        folder = f"{self._root}/{FILES}/"
        with self._errors("list", self.bucket.url(folder)):
            keys = [item.key for item in self.bucket.list(folder) if item.key.endswith(_JSON)]
        found = (self._read_record(key, key[len(folder) : -len(_JSON)]) for key in keys)
        return sorted((item for item in found if item is not None), key=lambda i: i.record.name)

    def put(self, record: ManifestRecord, *, elapsed_s: float, bytes_transferred: int) -> None:
        """Make ``record`` its name's current record and log a "downloaded" attempt.

        The record keeps the ETag and checksums its object (``record.path``) has now (one
        HEAD), for ``verify --quick``; the attempt is a new object, written after the record.
        """
        key = self._file_key(record.name)
        with self._errors("write", self.bucket.url(key)):
            head = self._object_head(record)
            # coverage_s only when set: records without it stay readable by earlier versions
            fields = record.model_dump(mode="json", exclude=_unset_optional(record))
            document = {**fields, _STORED_OBJECT: _stored_object(head)}
            self.bucket.put(key, _json_bytes(document), content_type=_CONTENT_TYPE)
        attempt = AttemptRecord(
            id=_entry_id(record.downloaded_at),
            name=record.name,
            url=record.url,
            status="downloaded",
            bytes_transferred=bytes_transferred,
            elapsed_s=elapsed_s,
            at=record.downloaded_at,
        )
        self._append(ATTEMPTS, attempt)

    def record_attempt(
        self,
        name: str,
        url: str,
        status: AttemptStatus,
        *,
        error: str | None = None,
        elapsed_s: float,
        bytes_transferred: int = 0,
    ) -> None:
        """Append one attempt (a new object) without touching the current record."""
        at = datetime.now(UTC)
        self._append(
            ATTEMPTS,
            AttemptRecord(
                id=_entry_id(at), name=name, url=url, status=status, error=error,
                bytes_transferred=bytes_transferred, elapsed_s=elapsed_s, at=at,
            ),
        )  # fmt: skip

    def history(self, name: str | None = None, *, limit: int | None = 100) -> list[AttemptRecord]:
        """Attempts, newest first: all, or only ``name``'s; at most ``limit`` (None: all)."""
        return self._newest(AttemptRecord, ATTEMPTS, name, limit)

    def record_verification(
        self,
        name: str,
        status: VerificationStatus,
        algo: HashAlgorithm,
        *,
        bytes_found: int,
        elapsed_s: float,
    ) -> None:
        """Append one re-check of ``name``'s file (a new object); the record is left alone."""
        at = datetime.now(UTC)
        self._append(
            VERIFICATIONS,
            VerificationRecord(
                id=_entry_id(at), name=name, status=status, algo=algo, bytes=bytes_found,
                elapsed_s=elapsed_s, at=at,
            ),
        )  # fmt: skip

    def verifications(
        self, name: str | None = None, *, limit: int | None = 100
    ) -> list[VerificationRecord]:
        """Re-checks, newest first: all, or only ``name``'s; at most ``limit`` (None: all)."""
        return self._newest(VerificationRecord, VERIFICATIONS, name, limit)

    def _object_head(self, record: ManifestRecord) -> ObjectHead | None:
        """What the object at ``record.path`` is now (None: absent, or a local path)."""
        if not is_s3_url(record.path):
            return None
        location = parse_s3_url(record.path)
        return self.bucket.named(location.bucket).head(location.key, checksums=True)

    def _file_key(self, name: str) -> str:
        return f"{self._root}/{FILES}/{name}{_JSON}"

    def _append(self, log_name: str, entry: AttemptRecord | VerificationRecord) -> None:
        """Write ``entry`` as a new object of its own: no two writers ever pick the same key."""
        stamp = entry.at.strftime(_STAMP)
        unique = uuid.uuid4().hex[:12]
        key = f"{self._root}/{log_name}/{entry.name}/{stamp}-{self._writer}-{unique}{_JSON}"
        with self._errors("write", self.bucket.url(key)):
            self.bucket.put(
                key, _json_bytes(entry.model_dump(mode="json")), content_type=_CONTENT_TYPE
            )

    def _newest(
        self, model: type[Entry], log_name: str, name: str | None, limit: int | None
    ) -> list[Entry]:
        """Entries of a log, newest first (by the stamp that begins each object's name)."""
        folder = f"{self._root}/{log_name}/" + ("" if name is None else f"{name}/")
        with self._errors("list", self.bucket.url(folder)):
            keys = [
                item.key
                for item in self.bucket.list(folder)
                if item.key.endswith(_JSON) and (name is None or "/" not in item.key[len(folder) :])
            ]
        keys.sort(key=lambda key: key.rpartition("/")[2], reverse=True)
        entries: list[Entry] = []
        for key in keys:
            if limit is not None and len(entries) >= limit:
                break
            entry = self._read(model, key)
            if entry is not None:
                entries.append(entry)
        return entries

    def _read_record(self, key: str, name: str) -> ObjectRecord | None:
        """The record object at ``key`` (which must be ``name``'s); None if absent or corrupt."""
        document = self._document(key)
        if document is None:
            return None
        stored = document.pop(_STORED_OBJECT, None)
        record = self._validated(ManifestRecord, document, key)
        if record is None:
            return None
        if record.name != name:
            self._corrupt(key, f"it records {record.name!r}, not {name!r}")
            return None
        try:
            held = StoredObject(**stored) if isinstance(stored, dict) else None
        except TypeError:
            held = None
        return ObjectRecord(record, held)

    def _read(self, model: type[Entry], key: str) -> Entry | None:
        document = self._document(key)
        return None if document is None else self._validated(model, document, key)

    def _document(self, key: str) -> dict[str, Any] | None:
        """The JSON object stored at ``key``; None (with a warning if it is not one) otherwise."""
        try:
            body = self.bucket.get(key)
        except ObjectTooLargeError as exc:
            self._corrupt(key, exc.message)
            return None
        except TransferError as exc:
            if exc.status_code == httpx.codes.NOT_FOUND:
                return None
            raise ManifestError(
                f"cannot read manifest object {self.bucket.url(key)}: {exc.message}"
            ) from exc
        try:
            document = json.loads(body)
        except ValueError as exc:
            self._corrupt(key, f"not JSON ({exc})")
            return None
        if not isinstance(document, dict):
            self._corrupt(key, "not a JSON object")
            return None
        return document

    def _validated(self, model: type[M], document: dict[str, Any], key: str) -> M | None:
        try:
            return model.model_validate(document)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            self._corrupt(key, f"{where}: {problem['msg']}")
            return None

    def _corrupt(self, key: str, why: str) -> None:
        log.warning(
            "skipping a manifest object that is not a valid record: %s",
            why,
            extra={"url": self.bucket.url(key)},
        )

    @contextmanager
    def _errors(self, action: str, url: str) -> Iterator[None]:
        """Translate the bucket's failures into ManifestError naming ``url``."""
        try:
            yield
        except TransferError as exc:
            raise ManifestError(f"cannot {action} manifest object {url}: {exc.message}") from exc


def _json_bytes(document: dict[str, Any]) -> bytes:
    """One JSON object on one line, as JSON-lines readers expect."""
    return (json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
