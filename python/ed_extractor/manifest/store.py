"""The manifest database: one SQLite file (WAL) with each source's current file and its history."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pydantic import ValidationError

from ed_extractor.errors import ManifestError
from ed_extractor.manifest.models import (
    AttemptRecord,
    AttemptStatus,
    HashAlgorithm,
    ManifestRecord,
    VerificationRecord,
    VerificationStatus,
)

M = TypeVar("M", ManifestRecord, AttemptRecord, VerificationRecord)

MANIFEST_FILENAME = "manifest.sqlite3"
BUSY_TIMEOUT_S = 30.0

# Schema migrations in order: MIGRATIONS[i] takes a database from user_version i to i + 1.
# Append new steps; never edit a released one.
MIGRATIONS: list[Sequence[str]] = [
    (
        """
        CREATE TABLE files (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            final_url TEXT NOT NULL,
            path TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            regime TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            etag TEXT,
            last_modified TEXT,
            uncompressed_bytes INTEGER,
            records INTEGER,
            downloaded_at TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            url TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('downloaded', 'unchanged', 'failed')),
            error TEXT,
            bytes_transferred INTEGER NOT NULL CHECK (bytes_transferred >= 0),
            elapsed_s REAL NOT NULL CHECK (elapsed_s >= 0),
            at TEXT NOT NULL
        )
        """,
        "CREATE INDEX attempts_by_name ON attempts (name, id)",
    ),
    (
        "ALTER TABLE files ADD COLUMN blake3 TEXT",
        """
        CREATE TABLE verifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('ok', 'mismatch', 'missing', 'size-mismatch')),
            algo TEXT NOT NULL CHECK (algo IN ('blake3', 'sha256')),
            bytes INTEGER NOT NULL CHECK (bytes >= 0),
            elapsed_s REAL NOT NULL CHECK (elapsed_s >= 0),
            at TEXT NOT NULL
        )
        """,
        "CREATE INDEX verifications_by_name ON verifications (name, id)",
    ),
    ("ALTER TABLE files ADD COLUMN coverage_s REAL",),
]

_FILE_COLUMNS = tuple(ManifestRecord.model_fields)
_ATTEMPT_COLUMNS = tuple(AttemptRecord.model_fields)
_SELECT_FILES = f"SELECT {', '.join(_FILE_COLUMNS)} FROM files"
_SELECT_ATTEMPTS = f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts"
_UPSERT = (
    f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _FILE_COLUMNS)}) "
    "ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FILE_COLUMNS if c != "name")
)
_VERIFICATION_COLUMNS = tuple(VerificationRecord.model_fields)
_SELECT_VERIFICATIONS = f"SELECT {', '.join(_VERIFICATION_COLUMNS)} FROM verifications"
_APPEND_VERIFICATION = (
    f"INSERT INTO verifications ({', '.join(_VERIFICATION_COLUMNS[1:])}) "
    f"VALUES ({', '.join('?' for _ in _VERIFICATION_COLUMNS[1:])})"
)
_APPEND = (
    "INSERT INTO attempts (name, url, status, error, bytes_transferred, elapsed_s, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


Journal = Literal["wal", "delete"]
"""How SQLite keeps the manifest's transactions: WAL (one host), or a rollback journal (shared)."""


def default_manifest_path(dest: Path) -> Path:
    """Return where the manifest of ``dest`` lives unless told otherwise."""
    return dest / MANIFEST_FILENAME


def schema_version() -> int:
    """Return the schema version this program writes (the number of migrations)."""
    return len(MIGRATIONS)


class ManifestStore:
    """The manifest at ``path``: opened (created and migrated when needed) on construction.

    Every public method is one transaction; a busy timeout lets several processes share the file.
    Threads of one run may share the store: its methods take turns on the one connection.
    Any SQLite failure is raised as ManifestError naming the path.
    """

    def __init__(self, path: Path, *, create: bool = True, journal: Journal = "wal") -> None:
        self.path = path
        self._base = str(path.resolve().parent)
        if not create and not path.exists():
            raise ManifestError(f"no manifest at {path}")
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ManifestError(f"cannot open manifest {path}: {exc}") from None
        try:
            self._conn.row_factory = sqlite3.Row
            with self._errors("open"):
                self._use_journal(journal)
                self._conn.execute("PRAGMA synchronous = FULL")
                self._migrate()
        except BaseException:
            self._conn.close()
            raise

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
        """Close the connection; the store is unusable afterwards. Closing twice is harmless."""
        with self._lock:
            self._conn.close()

    def get(self, name: str) -> ManifestRecord | None:
        """Return the current record of ``name``, or None if it was never downloaded."""
        with self._errors("read"):
            row = self._conn.execute(f"{_SELECT_FILES} WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._file(row)

    def with_etag(self, etag: str) -> list[ManifestRecord]:
        """Return the current records whose validator is ``etag``, ordered by name."""
        with self._errors("read"):
            rows = self._conn.execute(
                f"{_SELECT_FILES} WHERE etag = ? ORDER BY name", (etag,)
            ).fetchall()
        return [self._file(row) for row in rows]

    def records(self) -> list[ManifestRecord]:
        """Return every current record, ordered by name."""
        with self._errors("read"):
            rows = self._conn.execute(f"{_SELECT_FILES} ORDER BY name").fetchall()
        return [self._file(row) for row in rows]

    def put(self, record: ManifestRecord, *, elapsed_s: float, bytes_transferred: int) -> None:
        """Make ``record`` its name's current file and log a "downloaded" attempt, atomically."""
        values = record.model_dump()
        if not record.path.startswith("s3://"):  # a local path is kept relative to the manifest
            values["path"] = os.path.relpath(record.path, self._base)
        values["downloaded_at"] = record.downloaded_at.isoformat()
        with self._errors("write"), self._transaction():
            self._conn.execute(_UPSERT, values)
            self._conn.execute(
                _APPEND,
                (
                    record.name,
                    record.url,
                    "downloaded",
                    None,
                    bytes_transferred,
                    elapsed_s,
                    values["downloaded_at"],
                ),
            )

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
        """Append one attempt to the history without touching the current record."""
        at = datetime.now(UTC).isoformat()
        with self._errors("write"), self._transaction():
            self._conn.execute(
                _APPEND, (name, url, status, error, bytes_transferred, elapsed_s, at)
            )

    def history(self, name: str | None = None, *, limit: int | None = 100) -> list[AttemptRecord]:
        """Return attempts, newest first: all sources, or only ``name``; at most ``limit`` rows."""
        return self._newest(AttemptRecord, _SELECT_ATTEMPTS, name, limit)

    def record_verification(
        self,
        name: str,
        status: VerificationStatus,
        algo: HashAlgorithm,
        *,
        bytes_found: int,
        elapsed_s: float,
    ) -> None:
        """Append one re-check of ``name``'s file; the current record is left as it is."""
        at = datetime.now(UTC).isoformat()
        with self._errors("write"), self._transaction():
            self._conn.execute(
                _APPEND_VERIFICATION, (name, status, algo, bytes_found, elapsed_s, at)
            )

    def verifications(
        self, name: str | None = None, *, limit: int | None = 100
    ) -> list[VerificationRecord]:
        """Return re-checks, newest first: all files, or only ``name``; at most ``limit`` rows."""
        return self._newest(VerificationRecord, _SELECT_VERIFICATIONS, name, limit)

    def _newest(self, model: type[M], select: str, name: str | None, limit: int | None) -> list[M]:
        """Rows of a log table (``select``), newest first, optionally of one name only."""
        where = "WHERE name = ?" if name is not None else ""
        params: list[object] = [name] if name is not None else []
        sql = f"{select} {where} ORDER BY id DESC LIMIT ?"
        with self._errors("read"):
            rows = self._conn.execute(sql, [*params, -1 if limit is None else limit]).fetchall()
        return [self._validated(model, row) for row in rows]

    def _use_journal(self, journal: Journal) -> None:
        """Switch the file to ``journal`` (WAL, or a rollback journal), waiting out the others.

        SQLite answers "database is locked" at once here, without its busy timeout, when two
        processes open a new manifest together, so this waits (up to BUSY_TIMEOUT_S) itself.
        WAL needs memory shared by every process that opens the file, so only processes of one
        host; ``delete`` (a rollback journal and POSIX locks, which NFSv4 carries) is for a
        manifest on a network file system that several hosts share; once it holds tables, a run
        without the setting (a reader on another host) leaves it so.
        """
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] == journal:
            return  # every manifest but a new one; `manifest` and `verify` stop here
        if (
            journal == "wal"
            and self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        ):
            return  # an existing manifest kept on a rollback journal on purpose: a reader keeps it
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

        for attempt in Retrying(
            retry=retry_if_exception(_is_locked),
            stop=stop_after_delay(BUSY_TIMEOUT_S),
            wait=wait_random(0.01, 0.1),
            reraise=True,
        ):
            with attempt:
                self._conn.execute(f"PRAGMA journal_mode = {journal.upper()}")

    def _migrate(self) -> None:
        """Bring the schema to schema_version(), one transaction for all pending steps."""
        if self._checked_version() == schema_version():
            return
        with self._transaction():
            # Read again under the write lock: another process may have migrated meanwhile.
            current = self._checked_version()
            for steps in MIGRATIONS[current:]:
                for statement in steps:
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {schema_version():d}")

    def _checked_version(self) -> int:
        """Return the database's user_version; ManifestError if this program does not know it."""
        version: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > schema_version():
            raise ManifestError(
                f"manifest {self.path} has schema version {version}, newer than this program's "
                f"{schema_version()}; upgrade ed-extractor"
            )
        return version

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run the block inside BEGIN IMMEDIATE ... COMMIT, rolling back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.rollback()
            raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Hold the connection for the block; translate sqlite3 errors into ManifestError."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise ManifestError(f"cannot {action} manifest {self.path}: {exc}") from None

    def _file(self, row: sqlite3.Row) -> ManifestRecord:
        data = dict(row)
        # Stored relative to the manifest's folder, so that the folder can be mounted or moved
        # anywhere (a container's /data is the host's ./data); older rows hold absolute paths.
        if not data["path"].startswith("s3://"):
            data["path"] = os.path.normpath(os.path.join(self._base, data["path"]))
        return self._validated(ManifestRecord, data)

    def _validated(self, model: type[M], row: sqlite3.Row | dict[str, Any]) -> M:
        data: dict[str, Any] = dict(row)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ManifestError(
                f"manifest {self.path} holds an invalid {model.__name__} row: "
                f"{exc.errors()[0]['msg']}"
            ) from None


def _is_locked(error: BaseException) -> bool:
    """True for SQLite's "database is locked" (another connection holds the lock it needs)."""
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)
