"""Specification of the manifest: a WAL SQLite file with current records, history and migrations."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import ed_extractor
from ed_extractor.errors import ManifestError
from ed_extractor.manifest import (
    AttemptRecord,
    ManifestRecord,
    ManifestStore,
    default_manifest_path,
    schema_version,
)
from ed_extractor.manifest import store as store_module
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER

SHA = "ab" * 32
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_record(
    tmp_path: Path, name: str = "galaxy_1day.json.gz", **changes: Any
) -> ManifestRecord:
    fields: dict[str, Any] = {
        "name": name,
        "url": f"https://downloads.spansh.co.uk/{name}",
        "final_url": f"https://cdn.example/{name}",
        "path": str(tmp_path / name),
        "bytes": 1234,
        "sha256": SHA,
        "regime": "gzip",
        "mime_type": "application/gzip",
        "etag": '"abc"',
        "last_modified": "Wed, 01 May 2024 12:00:00 GMT",
        "uncompressed_bytes": 5678,
        "records": 9,
        "downloaded_at": WHEN,
    }
    fields.update(changes)
    return ManifestRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "manifest.sqlite3"


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection, to look at or tamper with the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


# --- opening, schema, migrations ----------------------------------------------------------------


def test_default_location_is_inside_dest(tmp_path: Path) -> None:
    assert default_manifest_path(tmp_path) == tmp_path / "manifest.sqlite3"


def test_a_new_manifest_is_created_in_wal_mode_at_the_current_version(db: Path) -> None:
    with ManifestStore(db):
        pass
    conn = raw(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() >= 1
    conn.close()


def test_data_survives_reopening(db: Path, tmp_path: Path) -> None:
    record = make_record(tmp_path)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.5, bytes_transferred=1234)
    with ManifestStore(db) as store:
        assert store.get(record.name) == record
        assert [a.status for a in store.history(record.name)] == ["downloaded"]


def test_an_empty_version_0_file_is_migrated(db: Path, tmp_path: Path) -> None:
    db.touch()  # SQLite treats an empty file as a new database with user_version 0
    with ManifestStore(db) as store:
        store.put(make_record(tmp_path), elapsed_s=0.1, bytes_transferred=1)
    assert raw(db).execute("PRAGMA user_version").fetchone()[0] == schema_version()


def test_an_older_database_is_migrated_step_by_step_keeping_its_data(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = make_record(tmp_path)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.0, bytes_transferred=10)
    old_version = schema_version()
    extra_step = ["ALTER TABLE files ADD COLUMN note TEXT", "UPDATE files SET note = 'migrated'"]
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, extra_step])

    with ManifestStore(db) as store:
        assert store.get(record.name) == record
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == old_version + 1
    assert conn.execute("SELECT note FROM files").fetchall() == [("migrated",)]


V1_FIXTURE = Path(__file__).parent / "data" / "manifest-v1"


def test_a_manifest_of_the_release_before_blake3_is_migrated_keeping_every_row(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "manifest-v1"
    shutil.copytree(V1_FIXTURE, copy)
    db = copy / "manifest.sqlite3"
    before = raw(db)
    assert before.execute("PRAGMA user_version").fetchone()[0] == 1
    files_before = before.execute("SELECT * FROM files ORDER BY name").fetchall()
    attempts_before = before.execute("SELECT * FROM attempts ORDER BY id").fetchall()
    before.close()
    assert len(files_before) == 3
    assert len(attempts_before) == 5

    with ManifestStore(db) as store:
        records = store.records()
        history = store.history(limit=None)
        assert store.verifications() == []
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 3
    files_after = conn.execute("SELECT * FROM files ORDER BY name").fetchall()
    assert [row[:-2] for row in files_after] == files_before  # then blake3 and coverage_s
    assert [row[-2:] for row in files_after] == [(None, None)] * 3
    assert conn.execute("SELECT * FROM attempts ORDER BY id").fetchall() == attempts_before
    conn.close()
    assert [r.name for r in records] == [
        "galaxy_1day.json.gz", "galaxy_gone.json.gz", "systems_1week.bin",
    ]  # fmt: skip
    assert all(r.blake3 is None for r in records)
    assert records[0].path == str(copy / "galaxy_1day.json.gz")
    assert records[0].records == 1
    assert records[2].etag is None
    assert [a.status for a in history] == [
        "failed", "unchanged", "downloaded", "downloaded", "downloaded",
    ]  # fmt: skip


def test_a_migrated_manifest_takes_blake3_digests(tmp_path: Path) -> None:
    copy = tmp_path / "manifest-v1"
    shutil.copytree(V1_FIXTURE, copy)
    with ManifestStore(copy / "manifest.sqlite3") as store:
        old = store.get("systems_1week.bin")
        assert old is not None
        updated = old.model_copy(update={"blake3": "cd" * 32})
        store.put(updated, elapsed_s=0.1, bytes_transferred=1)
    with ManifestStore(copy / "manifest.sqlite3") as store:
        assert store.get("systems_1week.bin") == updated


def test_a_failing_migration_leaves_the_database_as_it_was(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ManifestStore(db) as store:
        store.put(make_record(tmp_path), elapsed_s=1.0, bytes_transferred=10)
    old_version = schema_version()
    bad_step = ["ALTER TABLE files ADD COLUMN note TEXT", "THIS IS NOT SQL"]
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, bad_step])

    with pytest.raises(ManifestError, match=str(db)):
        ManifestStore(db)
    conn = raw(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == old_version
    columns = [row[1] for row in conn.execute("PRAGMA table_info(files)")]
    assert "note" not in columns


def test_a_database_newer_than_the_program_is_refused(db: Path) -> None:
    ManifestStore(db).close()
    raw(db).execute(f"PRAGMA user_version = {schema_version() + 1}")
    with pytest.raises(ManifestError, match="newer than this program") as info:
        ManifestStore(db)
    assert str(db) in str(info.value)


def test_a_file_that_is_not_sqlite_is_refused_naming_its_path(db: Path) -> None:
    db.write_bytes(b"this is not a database, just some text\n" * 100)
    with pytest.raises(ManifestError, match="file is not a database") as info:
        ManifestStore(db)
    assert str(db) in str(info.value)


def test_a_directory_is_refused_naming_its_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=str(tmp_path)):
        ManifestStore(tmp_path)


def test_create_false_refuses_a_missing_manifest_without_creating_it(db: Path) -> None:
    with pytest.raises(ManifestError, match=f"no manifest at {db}"):
        ManifestStore(db, create=False)
    assert not db.exists()


def test_a_closed_store_raises_manifest_error(db: Path) -> None:
    with ManifestStore(db) as store:
        pass
    store.close()  # closing twice is harmless
    with pytest.raises(ManifestError):
        store.records()


# --- records and history ------------------------------------------------------------------------


def test_get_of_an_unknown_name_is_none(db: Path) -> None:
    with ManifestStore(db) as store:
        assert store.get("nothing.json.gz") is None
        assert store.records() == []
        assert store.history() == []


def test_put_replaces_the_current_record_and_appends_history(db: Path, tmp_path: Path) -> None:
    first = make_record(tmp_path, bytes=100, etag='"v1"')
    second = make_record(tmp_path, bytes=200, etag='"v2"', downloaded_at=WHEN + timedelta(days=1))
    with ManifestStore(db) as store:
        store.put(first, elapsed_s=1.0, bytes_transferred=100)
        store.put(second, elapsed_s=2.0, bytes_transferred=150)
        assert store.records() == [second]
        history = store.history(first.name)
    assert [(a.status, a.bytes_transferred, a.elapsed_s) for a in history] == [
        ("downloaded", 150, 2.0),
        ("downloaded", 100, 1.0),
    ]
    assert history[0].at == second.downloaded_at
    assert history[0].url == second.url
    assert history[0].error is None


def test_records_are_ordered_by_name(db: Path, tmp_path: Path) -> None:
    with ManifestStore(db) as store:
        for name in ["galaxy_stations.json.gz", "galaxy.json.gz", "galaxy_1day.json.gz"]:
            store.put(make_record(tmp_path, name), elapsed_s=0.0, bytes_transferred=0)
        assert [r.name for r in store.records()] == [
            "galaxy.json.gz",
            "galaxy_1day.json.gz",
            "galaxy_stations.json.gz",
        ]


def test_a_blake3_digest_is_stored_and_read_back(db: Path, tmp_path: Path) -> None:
    record = make_record(tmp_path, blake3="ef" * 32)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.0, bytes_transferred=1)
        assert store.get(record.name) == record
        store.put(record.model_copy(update={"blake3": None}), elapsed_s=1.0, bytes_transferred=1)
        stored = store.get(record.name)
    assert stored is not None
    assert stored.blake3 is None


def test_verifications_are_a_history_of_their_own(db: Path, tmp_path: Path) -> None:
    record = make_record(tmp_path)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.0, bytes_transferred=1)
        store.record_verification(record.name, "ok", "blake3", bytes_found=1234, elapsed_s=0.5)
        store.record_verification("other", "missing", "sha256", bytes_found=0, elapsed_s=0.0)
        assert [(v.name, v.status, v.algo) for v in store.verifications()] == [
            ("other", "missing", "sha256"),
            (record.name, "ok", "blake3"),
        ]
        assert [v.bytes for v in store.verifications(record.name)] == [1234]
        assert store.get(record.name) == record
        assert len(store.history()) == 1
    with raw(db) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO verifications (name, status, algo, bytes, elapsed_s, at) "
            "VALUES ('x', 'fine', 'md5', 0, 0, 'now')"
        )


def test_record_attempt_logs_history_only(db: Path, tmp_path: Path) -> None:
    record = make_record(tmp_path)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.0, bytes_transferred=1234)
        before = datetime.now(UTC)
        store.record_attempt(record.name, record.url, "unchanged", elapsed_s=0.2)
        store.record_attempt(
            record.name, record.url, "failed", error="HTTP 503", elapsed_s=3.0, bytes_transferred=7
        )
        assert store.get(record.name) == record
        latest, unchanged, downloaded = store.history(record.name)
    assert (latest.status, latest.error, latest.bytes_transferred) == ("failed", "HTTP 503", 7)
    assert (unchanged.status, unchanged.error, unchanged.bytes_transferred) == (
        "unchanged",
        None,
        0,
    )
    assert downloaded.status == "downloaded"
    assert latest.id > unchanged.id > downloaded.id
    assert before <= unchanged.at <= datetime.now(UTC)
    assert unchanged.at.utcoffset() == timedelta(0)


def test_a_failure_of_a_never_downloaded_source_is_recorded(db: Path) -> None:
    with ManifestStore(db) as store:
        store.record_attempt("x.gz", "https://h/x.gz", "failed", error="boom", elapsed_s=0.5)
        assert store.get("x.gz") is None
        assert [a.name for a in store.history()] == ["x.gz"]


def test_history_filters_by_name_and_limits_newest_first(db: Path) -> None:
    with ManifestStore(db) as store:
        for i in range(5):
            store.record_attempt("a", "https://h/a", "unchanged", elapsed_s=float(i))
            store.record_attempt("b", "https://h/b", "unchanged", elapsed_s=float(i))
        assert len(store.history()) == 10
        assert len(store.history(limit=None)) == 10
        assert [a.elapsed_s for a in store.history("a", limit=3)] == [4.0, 3.0, 2.0]
        assert {a.name for a in store.history("b")} == {"b"}
        assert all(isinstance(a, AttemptRecord) for a in store.history())


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "maybe"},
        {"bytes_transferred": -1},
        {"elapsed_s": -0.5},
    ],
)
def test_invalid_attempts_are_refused_by_the_database(db: Path, changes: dict[str, Any]) -> None:
    args: dict[str, Any] = {"status": "failed", "elapsed_s": 1.0, "bytes_transferred": 0}
    args.update(changes)
    with ManifestStore(db) as store:
        with pytest.raises(ManifestError, match="CHECK constraint failed"):
            store.record_attempt("a", "https://h/a", **args)
        assert store.history() == []


def test_put_is_one_transaction_record_and_history_together(db: Path, tmp_path: Path) -> None:
    first = make_record(tmp_path, bytes=1)
    with ManifestStore(db) as store:
        store.put(first, elapsed_s=1.0, bytes_transferred=1)
        raw(db).execute(
            "CREATE TRIGGER no_history BEFORE INSERT ON attempts "
            "BEGIN SELECT RAISE(ABORT, 'history is closed'); END"
        )
        with pytest.raises(ManifestError, match="history is closed"):
            store.put(make_record(tmp_path, bytes=2), elapsed_s=1.0, bytes_transferred=2)
        assert store.get(first.name) == first  # the upsert was rolled back with the history row
        with pytest.raises(ManifestError):
            store.put(make_record(tmp_path, "new.gz"), elapsed_s=1.0, bytes_transferred=2)
        assert store.get("new.gz") is None
        assert len(store.history()) == 1

        raw(db).execute("DROP TRIGGER no_history")
        # The same store carries on: the failed transactions were rolled back, not left open.
        store.put(make_record(tmp_path, "new.gz"), elapsed_s=1.0, bytes_transferred=2)
        assert store.get("new.gz") is not None


def test_a_tampered_row_is_reported_as_manifest_error(db: Path, tmp_path: Path) -> None:
    with ManifestStore(db) as store:
        store.put(make_record(tmp_path), elapsed_s=1.0, bytes_transferred=1)
        raw(db).execute("UPDATE files SET regime = 'rar'")
        with pytest.raises(ManifestError, match="invalid ManifestRecord row"):
            store.records()


# --- sharing the file ---------------------------------------------------------------------------


def test_two_connections_see_each_others_writes(db: Path, tmp_path: Path) -> None:
    with ManifestStore(db) as one, ManifestStore(db) as two:
        one.put(make_record(tmp_path, "a.gz"), elapsed_s=1.0, bytes_transferred=1)
        assert two.get("a.gz") is not None
        two.record_attempt("a.gz", "https://h/a.gz", "unchanged", elapsed_s=0.1)
        assert [a.status for a in one.history("a.gz")] == ["unchanged", "downloaded"]


def test_a_writer_waits_for_another_writer_instead_of_failing(db: Path, tmp_path: Path) -> None:
    locked = threading.Event()

    def hold_the_write_lock() -> None:
        other = raw(db)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(0.5)
        other.execute("COMMIT")
        other.close()

    with ManifestStore(db) as store:
        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        assert locked.wait(10)
        started = time.monotonic()
        store.put(make_record(tmp_path), elapsed_s=1.0, bytes_transferred=1)
        waited = time.monotonic() - started
        holder.join()
        assert waited >= 0.3
        assert store.get("galaxy_1day.json.gz") is not None


def test_opening_a_new_manifest_waits_while_another_process_creates_it(db: Path) -> None:
    # SQLite refuses the switch to WAL at once, without its busy timeout, while another
    # connection holds a write lock on a file still in rollback mode: two jobs starting
    # together on an empty volume. Opening must wait for it, not fail.
    creator = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE scratch (x)")
    released = threading.Timer(0.3, lambda: creator.execute("COMMIT"))
    started = time.monotonic()
    released.start()
    try:
        with ManifestStore(db) as store:
            assert store.records() == []
    finally:
        released.join()
        creator.close()
    assert time.monotonic() - started >= 0.3
    assert raw(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from ed_extractor.manifest import ManifestRecord, ManifestStore
db, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with ManifestStore(db) as store:
    for i in range(count):
        name = f"{prefix}{i:03d}.gz"
        record = ManifestRecord(
            name=name, url="https://h/" + name, final_url="https://h/" + name,
            path=str(db.parent / name), bytes=i, sha256="0" * 64, regime="gzip",
            mime_type="application/gzip", downloaded_at=datetime.now(UTC),
        )
        store.put(record, elapsed_s=0.0, bytes_transferred=i)
        store.record_attempt(name, record.url, "unchanged", elapsed_s=0.0)
"""


def test_two_processes_can_write_the_same_manifest_at_once(db: Path) -> None:
    package_root = str(Path(ed_extractor.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
    count = 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), prefix, str(count)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    with ManifestStore(db) as store:
        assert len(store.records()) == 2 * count
        assert len(store.history(limit=None)) == 4 * count


# --- models, and whether a recorded file is intact -----------------------------------------------
# (the manifest's record_is_intact is gone: the run asks its destination, here LocalFolder.holds)


def record_is_intact(record: ManifestRecord) -> bool:
    """What a run asks of a folder destination before it calls a source unchanged."""
    return LOCAL_FOLDER.holds(Path(record.path), record.bytes, record.sha256)


def test_downloaded_at_must_be_timezone_aware(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        make_record(tmp_path, downloaded_at=datetime(2024, 5, 1, 12, 0))


def test_downloaded_at_is_kept_in_utc(db: Path, tmp_path: Path) -> None:
    paris = timezone(timedelta(hours=2))
    record = make_record(tmp_path, downloaded_at=datetime(2024, 5, 1, 14, 0, tzinfo=paris))
    assert record.downloaded_at == WHEN
    assert record.downloaded_at.utcoffset() == timedelta(0)
    with ManifestStore(db) as store:
        store.put(record, elapsed_s=1.0, bytes_transferred=1)
        stored = store.get(record.name)
    assert stored is not None
    assert stored.downloaded_at.tzinfo == UTC


@pytest.mark.parametrize(
    "changes",
    [
        {"path": "relative/galaxy.json.gz"},
        {"sha256": "zz" * 32},
        {"sha256": "ab"},
        {"blake3": "ab"},
        {"blake3": "AB" * 32},
        {"regime": "rar"},
        {"bytes": -1},
        {"unexpected": 1},
    ],
)
def test_invalid_records_are_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_record(tmp_path, **changes)


def test_record_is_intact_when_the_file_has_the_recorded_size(tmp_path: Path) -> None:
    record = make_record(tmp_path, bytes=5)
    Path(record.path).write_bytes(b"12345")
    assert record_is_intact(record)


@pytest.mark.parametrize("content", [b"1234", b"123456", b""])
def test_record_is_not_intact_when_the_size_differs(tmp_path: Path, content: bytes) -> None:
    record = make_record(tmp_path, bytes=5)
    Path(record.path).write_bytes(content)
    assert not record_is_intact(record)


def test_record_is_not_intact_when_missing_a_directory_or_a_symlink(tmp_path: Path) -> None:
    missing = make_record(tmp_path, "missing.gz", bytes=0)
    assert not record_is_intact(missing)

    directory = make_record(tmp_path, "dir.gz", bytes=0)
    Path(directory.path).mkdir()
    assert not record_is_intact(directory)

    (tmp_path / "real.gz").write_bytes(b"12345")
    link = make_record(tmp_path, "link.gz", bytes=5)
    Path(link.path).symlink_to(tmp_path / "real.gz")
    assert not record_is_intact(link)


def test_paths_are_stored_relative_so_the_folder_can_move(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with ManifestStore(data / "manifest.sqlite3") as store:
        store.put(make_record(data), elapsed_s=1.0, bytes_transferred=1234)
    with contextlib.closing(sqlite3.connect(data / "manifest.sqlite3")) as raw:
        assert raw.execute("SELECT path FROM files").fetchone() == ("galaxy_1day.json.gz",)

    moved = data.rename(tmp_path / "mounted-elsewhere")  # a container's /data is the host's ./data
    with ManifestStore(moved / "manifest.sqlite3") as store:
        record = store.get("galaxy_1day.json.gz")
    assert record is not None
    assert record.path == str(moved / "galaxy_1day.json.gz")


def test_absolute_paths_of_older_rows_are_read_as_they_are(tmp_path: Path, db: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "galaxy_1day.json.gz"
    with ManifestStore(db) as store:
        store.put(make_record(tmp_path), elapsed_s=1.0, bytes_transferred=1)
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE files SET path = ?", (str(elsewhere),))
    with ManifestStore(db) as store:
        record = store.get("galaxy_1day.json.gz")
    assert record is not None
    assert record.path == str(elsewhere)


@pytest.mark.parametrize(
    ("value", "digest"),
    [
        ("AB" * 32, "ab" * 32),
        (f" {'0f' * 32}\n", "0f" * 32),
        ("ab" * 31, None),
        ("zz" * 32, None),
        ("ab" * 33, None),
        ("", None),
    ],
)
def test_every_sha256_taken_in_is_checked_alike(
    tmp_path: Path, value: str, digest: str | None
) -> None:
    """--expect-sha256, a source's expect_sha256 and a manifest record accept the same digests."""
    from ed_extractor.cli import build_parser
    from ed_extractor.errors import ConfigError
    from ed_extractor.settings import SourceSpec

    url = "https://h/x.gz"
    parsers: list[tuple[Any, type[BaseException]]] = [
        (lambda: build_parser().parse_args(["fetch", url, "--expect-sha256", value]).expect_sha256,
         SystemExit),
        (lambda: SourceSpec(url=url, expect_sha256=value).expect_sha256, ConfigError),
        (lambda: make_record(tmp_path, sha256=value).sha256, ValidationError),
    ]  # fmt: skip
    for parse, error in parsers:
        if digest is None:
            with pytest.raises(error):
                parse()
        else:
            assert parse() == digest


def test_a_manifest_on_a_rollback_journal_stays_so_and_takes_writers_of_two_processes(
    tmp_path: Path,
) -> None:
    """ED_EXTRACTOR_MANIFEST_JOURNAL=delete: for a manifest on a network file system of hosts."""
    path = tmp_path / "manifest.sqlite3"
    with ManifestStore(path, journal="delete") as store:
        store.record_attempt("a", "http://x/a", "unchanged", elapsed_s=0.1)
    with ManifestStore(path) as reader:  # a run without the setting does not switch it to WAL
        assert [row.name for row in reader.history()] == ["a"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "manifest.sqlite3-wal").exists()
    writers = [
        subprocess.Popen([sys.executable, "-c", (
            "import sys; from pathlib import Path\n"
            "from ed_extractor.manifest import ManifestStore\n"
            "with ManifestStore(Path(sys.argv[1]), journal='delete') as s:\n"
            "    for i in range(50): s.record_attempt(f'{sys.argv[2]}{i}', 'u', 'failed', "
            "elapsed_s=0.0)\n"
        ), str(path), prefix]) for prefix in ("p", "q")
    ]  # fmt: skip
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    with ManifestStore(path, journal="delete") as store:
        assert len(store.history(limit=None)) == 101
