"""Re-hash stored files or objects against their records: BLAKE3 where recorded, else SHA-256."""

from __future__ import annotations

import mmap
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel

from ed_extractor.errors import StorageError, TransferError, UsageError
from ed_extractor.hashing import Blake3, Sha256
from ed_extractor.manifest import HashAlgorithm, ManifestRecord, VerificationStatus
from ed_extractor.manifest.object_store import ObjectRecord, StoredObject
from ed_extractor.services.file_transfer.base import ProgressReporter
from ed_extractor.services.s3.bucket import Bucket, ObjectHead
from ed_extractor.services.s3.location import parse_s3_url

AlgorithmChoice = Literal["auto", "blake3", "sha256"]

# One update per slice of the mapped file: large enough for BLAKE3 to split it over every core,
# small enough for the progress bar to move.
_SLICE: Final = 64 << 20


class FileCheck(BaseModel):
    """The verdict on one recorded file: the object ``verify --json`` prints."""

    name: str
    path: str
    status: VerificationStatus
    algo: HashAlgorithm
    bytes: int  # found on disk; 0 when missing
    elapsed_s: float


def algorithm_for(record: ManifestRecord, choice: AlgorithmChoice) -> HashAlgorithm:
    """The digest to check: BLAKE3 when recorded (auto) or asked for, else SHA-256."""
    if choice == "auto":
        return "blake3" if record.blake3 is not None else "sha256"
    if choice == "blake3" and record.blake3 is None:
        raise UsageError(
            f"--algo blake3: no BLAKE3 is recorded for {record.name} (stored before BLAKE3 was "
            "recorded, or with ED_EXTRACTOR_BLAKE3=0); use --algo auto or sha256"
        )
    return choice


def _verdict(
    record: ManifestRecord,
    status: VerificationStatus,
    algo: HashAlgorithm,
    found: int,
    started: float,
) -> FileCheck:
    """The FileCheck of ``record``, timed from ``started`` (time.monotonic)."""
    elapsed = round(time.monotonic() - started, 4)
    return FileCheck(
        name=record.name, path=record.path, status=status, algo=algo, bytes=found,
        elapsed_s=elapsed,
    )  # fmt: skip


def _expected_digest(record: ManifestRecord, algo: HashAlgorithm) -> str | None:
    return record.blake3 if algo == "blake3" else record.sha256


def hash_file(path: Path, algo: HashAlgorithm, advance: Callable[[int], None]) -> str:
    """Hex digest of the file at ``path`` (never following a symlink), read through a memory map.

    Both backends' Blake3 spread a large update over every core (rayon), the GIL released.
    """
    hasher = Blake3() if algo == "blake3" else Sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size == 0:
            return hasher.hexdigest()  # an empty file cannot be mapped
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            mapped.madvise(mmap.MADV_SEQUENTIAL)
            with memoryview(mapped) as whole:
                for start in range(0, len(whole), _SLICE):
                    with whole[start : start + _SLICE] as part:
                        hasher.update(part)
                        advance(len(part))
    finally:
        os.close(fd)
    return hasher.hexdigest()


def check_record(
    record: ManifestRecord, algo: HashAlgorithm, progress: ProgressReporter
) -> FileCheck:
    """Compare the file of ``record`` with it: presence, size, then the digest."""
    started = time.monotonic()
    path = Path(record.path)

    def verdict(status: VerificationStatus, found: int) -> FileCheck:
        return _verdict(record, status, algo, found, started)

    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return verdict("missing", 0)
    except OSError as exc:
        raise StorageError(path, f"cannot stat ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):  # a symlink or folder is not the file that was stored
        return verdict("missing", 0)
    if st.st_size != record.bytes:
        return verdict("size-mismatch", st.st_size)
    expected = _expected_digest(record, algo)
    progress.start(record.name, st.st_size)
    try:
        digest = hash_file(path, algo, progress.advance)
    except FileNotFoundError:
        return verdict("missing", 0)
    except OSError as exc:
        raise StorageError(path, f"cannot read ({exc.strerror or exc})") from exc
    finally:
        progress.stop()
    return verdict("ok" if digest == expected else "mismatch", st.st_size)


def check_records(
    records: Iterable[ManifestRecord],
    choice: AlgorithmChoice,
    progress: Callable[[], ProgressReporter],
) -> Iterator[FileCheck]:
    """Check each record in turn; the algorithm of every record is settled before any hashing."""
    planned = [(record, algorithm_for(record, choice)) for record in records]
    for record, algo in planned:
        yield check_record(record, algo, progress())


def _quick_status(record: ManifestRecord, head: ObjectHead, stored: StoredObject | None) -> bool:
    """True when what the store says of the object vouches for the record, without its body.

    The user metadata ``sha256``/``blake3`` (written by the upload) must equal the record's
    digests, and the ETag and whole-object checksums the store reports must be those it
    reported when the record was written. At least one of them must be there to vouch.
    """
    vouched = False
    for algo in ("sha256", "blake3"):
        written, recorded = head.metadata.get(algo), _expected_digest(record, algo)
        if written is not None and recorded is not None:
            if written.strip().lower() != recorded:
                return False
            vouched = True
    if stored is not None:
        if stored.etag and stored.etag != head.etag:
            return False
        for name, value in stored.checksums.items():
            if head.checksums.get(name, value) != value:
                return False
        vouched = vouched or bool(stored.etag)
    return vouched


def hash_object(
    bucket: Bucket, key: str, algo: HashAlgorithm, advance: Callable[[int], None]
) -> tuple[str, int]:
    """Hex digest and size of the object ``key``, its body streamed (never held whole)."""
    hasher = Blake3() if algo == "blake3" else Sha256()
    size = 0
    for chunk in bucket.stream(key):
        hasher.update(chunk)
        size += len(chunk)
        advance(len(chunk))
    return hasher.hexdigest(), size


def check_object(
    bucket: Bucket,
    entry: ObjectRecord,
    algo: HashAlgorithm,
    progress: ProgressReporter,
    *,
    quick: bool = False,
) -> FileCheck:
    """Compare the object of ``entry`` with its record: presence, size, then the digest.

    ``quick`` compares the store's metadata and checksums instead of reading the body.
    """
    started = time.monotonic()
    record = entry.record
    location = parse_s3_url(record.path)
    bucket = bucket.named(location.bucket)
    head = bucket.head(location.key, checksums=quick)
    if head is None:
        return _verdict(record, "missing", algo, 0, started)
    if head.size != record.bytes:
        return _verdict(record, "size-mismatch", algo, head.size, started)
    if quick:
        ok = _quick_status(record, head, entry.stored)
        return _verdict(record, "ok" if ok else "mismatch", algo, head.size, started)
    progress.start(record.name, head.size)
    try:
        digest, size = hash_object(bucket, location.key, algo, progress.advance)
    except TransferError as exc:
        if exc.status_code != 404:  # removed since the HEAD
            raise
        return _verdict(record, "missing", algo, 0, started)
    finally:
        progress.stop()
    if size != record.bytes:  # replaced since the HEAD
        return _verdict(record, "size-mismatch", algo, size, started)
    status: VerificationStatus = "ok" if digest == _expected_digest(record, algo) else "mismatch"
    return _verdict(record, status, algo, size, started)


def check_objects(
    bucket: Bucket,
    entries: Iterable[ObjectRecord],
    choice: AlgorithmChoice,
    progress: Callable[[], ProgressReporter],
    *,
    quick: bool = False,
) -> Iterator[FileCheck]:
    """Check each recorded object in turn; every algorithm is settled before any request."""
    planned = [(entry, algorithm_for(entry.record, choice)) for entry in entries]
    for entry, algo in planned:
        yield check_object(bucket, entry, algo, progress(), quick=quick)
