"""ObjectStore: files land as objects under ``s3://BUCKET/PREFIX``, streamed by multipart upload.

A download still goes through its part file (now in a scratch folder) and the native part sink:
the ``ObjectLanding`` follows the sink's hashed frontier and sends each part of the file as soon
as all its bytes are on disk and hashed, each with a CRC-64/NVME (else Content-MD5) that S3
checks; an uploaded part's bytes are released from the scratch file (a punched hole), and a
writer that gets too far ahead of the upload waits, so the scratch and the memory stay bounded
whatever the file's size. The upload goes to a staging key under ``_manifest/`` and is completed
only by ``land``, after the content check and any expected SHA-256 passed, then copied into place
inside the store; every failure aborts it, so the previous object under the key is untouched and
no upload is left behind. A run killed meanwhile leaves a state object (the parts sent, with the
running CRC): the next run continues the upload from its last part, fetches only the rest from
the source, and reads the staged object back once to check it before it is copied into place.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import dataclasses
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ed_extractor.errors import DestinationError, StorageError, TransferError, VerificationError
from ed_extractor.hashing import Blake3, Sha256
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    FileLanding,
    LandedFile,
)
from ed_extractor.services.file_transfer.resume import ResumePoint
from ed_extractor.services.s3.bucket import Bucket
from ed_extractor.services.s3.location import S3Prefix
from ed_extractor.services.s3.multipart import (
    CONTENT_TYPE,
    FileRegion,
    MultipartUploads,
    encode_crc64,
)
from ed_extractor.services.s3.upload_state import SentPart, UploadState, UploadStates

if TYPE_CHECKING:
    from ed_extractor.hashing import PartSink

log = logging.getLogger(__name__)

MIN_PART: Final = 8 << 20  # S3 takes parts of 5 MiB and more; 8 MiB keeps requests few
MAX_PARTS: Final = 10_000  # S3's most parts in one upload
PARTS_IN_FLIGHT: Final = 4  # parts sent at once per file (each streamed from the scratch file)
#: Bytes a writer may run ahead of the uploaded parts, beyond the parts in flight: the sink's
#: reorder window.
AHEAD_BYTES: Final = 32 << 20
POLL_S: Final = 0.02  # how often the upload looks at the sink's frontier
_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02
_MULTIPART_ETAG: Final = re.compile(r'^"?([0-9a-fA-F]{32})-([0-9]+)"?$')


def part_size(total: int | None, number: int = 1) -> int:
    """The size of part ``number`` of a file of ``total`` bytes (None: not known in advance).

    A known size is cut in equal parts of at least MIN_PART, at most MAX_PARTS of them (rounded
    up to a MiB). An unknown one starts at MIN_PART and doubles every 1,000 parts, so that
    10,000 parts reach past 8 TB.
    """
    if total is not None:
        need = -(-total // MAX_PARTS)
        return max(MIN_PART, -(-need // (1 << 20)) << 20)
    return MIN_PART << ((number - 1) // 1000)


class ObjectStore:
    """A run's destination in an object store: ``prefix``'s objects, their files under ``scratch``.

    The file of a source is ``scratch/<name>`` locally (its part file streams out from there) and
    the object ``PREFIX/<name>``. A multipart upload goes to ``PREFIX/_manifest/staging/<name>``
    first and is copied (inside the store) to its name once verified, with its digests as
    metadata; ``PREFIX/_manifest/uploads/<name>.json`` lets a killed run's upload go on.
    """

    def __init__(self, bucket: Bucket, prefix: S3Prefix, scratch: Path) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.scratch = scratch
        self.uploads = MultipartUploads(bucket)
        self.states = UploadStates(bucket, prefix.key("_manifest/"))
        self._crc64: bool | None = None  # does the store take full-object CRC-64/NVME uploads?
        self._lock = threading.Lock()

    def name(self, final: Path) -> str:
        """The file's name (a relative path with ``/``) of the local file ``final``."""
        return final.relative_to(self.scratch).as_posix()

    def key(self, final: Path) -> str:
        """The object key of the local file ``final`` (a path under the scratch folder)."""
        return self.prefix.key(self.name(final))

    def staging_key(self, name: str) -> str:
        """Where the upload of ``name`` goes before it is verified and copied to its key."""
        return self.prefix.key(f"_manifest/staging/{name}")

    def landing(self, final: Path, metadata: Mapping[str, str]) -> FileLanding:
        """A streamed multipart upload of ``final`` to its object."""
        return ObjectLanding(self, self.name(final), dict(metadata))

    def location(self, final: Path) -> str:
        """``s3://BUCKET/PREFIX/<name>``."""
        return self.bucket.url(self.key(final))

    def holds(self, final: Path, size: int, sha256: str) -> bool:
        """True when the object is there with ``size`` bytes and ``sha256`` in its metadata."""
        head = self.bucket.head(self.key(final))
        return head is not None and head.size == size and head.metadata.get("sha256") == sha256

    def check_writable(self) -> None:
        """DestinationError unless an object can be written under the prefix (one PUT, DELETE).

        A bucket that answers a HEAD may still refuse writes (read-only credentials): that is
        found before any source is fetched, and nothing is left behind.
        """
        probe = self.prefix.key(f"_manifest/.write-check-{uuid.uuid4().hex}")
        try:
            self.bucket.put(probe, b"", content_type=CONTENT_TYPE)
        except TransferError as exc:
            if exc.status_code in (401, 403):
                raise DestinationError(
                    self.bucket.url(self.prefix.key("")),
                    f"cannot write under {self.prefix.url} (access denied: check the "
                    "credentials' rights)",
                ) from None
            raise
        self.bucket.delete(probe)

    def restore(self, final: Path) -> bool:
        """Download the object of ``final`` to ``final`` (to be continued); False when none."""
        key = self.key(final)
        if self.bucket.head(key) is None:
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            with final.open("wb") as file:
                for chunk in self.bucket.stream(key):
                    file.write(chunk)
        except OSError as exc:
            raise StorageError(final, f"cannot write ({exc.strerror or exc})") from exc
        return True

    def create_upload(self, key: str, metadata: Mapping[str, str]) -> tuple[str, bool]:
        """Start the upload of ``key``; its id, and whether its parts carry CRC-64/NVME.

        A store that refuses a full-object CRC-64/NVME upload (HTTP 400/501) gets Content-MD5
        parts instead, for the rest of the run.
        """
        with self._lock:
            crc64 = self._crc64
        if crc64 is not False:
            try:
                upload_id = self.uploads.create_upload(key, metadata, CONTENT_TYPE, crc64=True)
            except TransferError as exc:
                if exc.status_code not in (400, 501):
                    raise
                log.info("the store takes no CRC-64/NVME uploads; parts carry Content-MD5",
                         extra={"error": str(exc)})  # fmt: skip
                with self._lock:
                    self._crc64 = False
            else:
                with self._lock:
                    self._crc64 = True
                return upload_id, True
        return self.uploads.create_upload(key, metadata, CONTENT_TYPE, crc64=False), False

    def abort_stale_uploads(self, max_age_s: float, *, key: str | None = None) -> int:
        """Abort the uploads under the prefix begun more than ``max_age_s`` ago; how many.

        With ``key``, the uploads of that key only, whatever their age (one no state names any
        more). A failure is logged, never raised.
        """
        prefix = key if key is not None else self.prefix.key("")
        cutoff = datetime.now(UTC) - timedelta(seconds=max_age_s)
        aborted = 0
        try:
            for upload in self.uploads.pending_uploads(prefix):
                if (key is not None and upload.key == key) or (
                    key is None and upload.initiated < cutoff
                ):
                    self.uploads.abort_upload(upload.key, upload.upload_id)
                    aborted += 1
        except TransferError as exc:
            log.warning("cannot clean up unfinished uploads", extra={"error": str(exc)})
        if aborted:
            log.info("aborted unfinished uploads", extra={"prefix": prefix, "count": aborted})
        return aborted


class ObjectLanding:
    """One file's streamed multipart upload (see the module's docstring).

    Parts go out from a thread that follows the sink (``follow``), PARTS_IN_FLIGHT at a time;
    ``land`` sends what is left, completes and copies the object into place, ``abandon`` aborts.
    An upload a killed run left (``resume_point``) goes on from its last part in order; its
    object is then read back whole from the store and checked before it is copied into place
    (``defers_checks``): the bytes sent before the kill are no longer here to check.
    """

    keeps_parts = False

    def __init__(self, store: ObjectStore, name: str, metadata: dict[str, str]) -> None:
        self._store = store
        self._uploads = store.uploads
        self._name = name
        self._key = store.prefix.key(name)
        self._staging = store.staging_key(name)
        self._url = store.bucket.url(self._key)
        self._metadata = metadata
        self._cond = threading.Condition()
        self._state_lock = threading.Lock()
        self._sink: PartSink | None = None
        self._part: Path | None = None
        self._upload_id: str | None = None
        self._crc64 = False
        self._facts: ResumePoint | None = None  # the source's URL, validator and length
        self._sent: dict[int, SentPart] = {}  # the parts the store acknowledged
        self._first_number = 1  # the number of the first part this run sends
        self._uploaded: list[tuple[int, int]] = []  # [start, end) of the parts sent, merged
        self._scheduled = 0  # the first byte not yet given to a part
        self._full_crc = 0
        self._final_size: int | None = None
        self._error: BaseException | None = None
        self._stopped = False
        self._landed = False
        self._resumed = False
        self._pump: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        self._md5s: dict[int, bytes] = {}
        self._fd: int | None = None
        self._total_hint: int | None = None

    # --- FileLanding ---

    @property
    def defers_checks(self) -> bool:
        """True for a resumed upload: its content is checked when read back from the store."""
        return self._resumed

    def resume_point(self, url: str, part: Path) -> ResumePoint | None:
        """Take up the upload a killed run left for this file, if the store still holds it.

        Its parts that the store holds, in order from the first, are kept; ``part`` becomes a
        sparse file of the whole size, as if those bytes were on disk. None: start afresh (an
        upload of another URL, or one the store lost, is aborted first).
        """
        state = self._store.states.load(self._name)
        if state is None:
            return None
        held = self._held_parts(state) if state.url == url else []
        if not held:
            self._forget(state.upload_id)
            return None
        last = held[-1]
        self._upload_id, self._crc64, self._resumed = state.upload_id, state.crc64, True
        self._sent = {p.number: p for p in held}
        self._md5s = {p.number: bytes.fromhex(p.md5) for p in held}
        self._first_number = last.number + 1
        self._scheduled, self._full_crc = last.end, last.crc_after
        self._uploaded = [(0, last.end)]
        self._facts = ResumePoint(url, state.validator, state.total)
        with part.open("wb") as sparse:
            sparse.truncate(state.total)
        log.info("continuing an upload",
                 extra={"object": self._url, "parts": len(held), "offset": last.end})  # fmt: skip
        segments = ((0, last.end, state.total),)
        return ResumePoint(url, state.validator, state.total, segments=segments)

    def note(self, point: ResumePoint) -> None:
        """The download's source: URL, validator and length (what a later run must match)."""
        if self._facts is None:
            self._facts = ResumePoint(point.url, point.validator, point.total)

    def follow(self, sink: PartSink, part: Path, total: int | None) -> None:
        """Start sending the part file's parts as the sink hashes them (``total``: if known)."""
        self._sink, self._part, self._total_hint = sink, part, total
        self._fd = _open_for_release(part)
        self._pump = threading.Thread(target=self._run_pump, name="s3-upload", daemon=True)
        self._pump.start()

    def wait_room(self, end: int, stop: threading.Event) -> bool:
        """Hold a writer whose ``end`` runs too far ahead of the parts already sent."""
        with self._cond:
            while not stop.is_set():
                if self._error is not None:
                    raise self._error
                if end - self._uploaded_end() <= self._room():
                    return True
                self._cond.wait(POLL_S * 5)
        return False

    def land(
        self,
        part: Path,
        file: LandedFile,
        *,
        check: ContentCheck | None = None,
        expect: Callable[[str], None] | None = None,
    ) -> tuple[LandedFile, ContentSummary | None]:
        """Send the rest and complete; the object is copied into place with its digests.

        A resumed upload is first read back and hashed (and put through ``check`` and
        ``expect``): its digests and summary are returned instead of the ones given.
        """
        if self._part is None:  # a file written whole before it lands: no sink was followed
            self._part, self._total_hint = part, file.bytes
            self._fd = _open_for_release(part)
        with self._cond:
            self._final_size = file.bytes
            self._cond.notify_all()
        if self._pump is None:
            self._pump_parts()
        self._join_pump()
        summary: ContentSummary | None = None
        if self._upload_id is None:  # the whole file fits in one part: one PUT, in place
            self._uploads.put_region(self._key, FileRegion(part, 0, file.bytes),
                                     self._object_metadata(file), CONTENT_TYPE)  # fmt: skip
        else:
            etag = self._complete()
            if self._resumed:
                file, summary = self._read_back(file, check, expect)
            self._move_staged(etag, file)
        self._landed = True
        self._close()
        with contextlib.suppress(OSError):
            part.unlink()
        log.info("object stored", extra={"object": self._url, "bytes": file.bytes,
                                         "parts": max(1, len(self._sent))})  # fmt: skip
        return file, summary

    def abandon(self) -> None:
        """Stop sending and abort the upload (the previous object stays); never raises."""
        if self._landed:
            return
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        with contextlib.suppress(BaseException):
            self._join_pump()
        upload_id, self._upload_id = self._upload_id, None
        self._forget(upload_id)
        self._close()

    # --- resuming, completing, moving into place ---

    def _held_parts(self, state: UploadState) -> list[SentPart]:
        """The state's parts that the store holds as recorded, in order from the first."""
        try:
            held = self._uploads.held_parts(self._staging, state.upload_id)
        except TransferError as exc:
            log.info("the store lost the upload; starting over",
                     extra={"object": self._url, "error": str(exc)})  # fmt: skip
            return []
        kept: list[SentPart] = []
        for part in state.parts:
            if held.get(part.number) != (part.size, part.etag):
                break
            kept.append(part)
        return kept

    def _forget(self, upload_id: str | None) -> None:
        """Abort ``upload_id`` (if any) and drop the state; never raises."""
        if upload_id is not None:
            try:
                self._uploads.abort_upload(self._staging, upload_id)
            except TransferError as exc:  # left for abort_stale_uploads of a later run
                log.warning("cannot abort the upload", extra={"object": self._url,
                                                             "error": str(exc)})  # fmt: skip
        self._store.states.delete(self._name)

    def _complete(self) -> str:
        """Complete the upload; check the store's CRC of the whole object; its ETag."""
        assert self._upload_id is not None
        parts = [(number, self._sent[number].etag) for number in sorted(self._sent)]
        etag, crc = self._uploads.complete_upload(
            self._staging, self._upload_id, parts, self._full_crc if self._crc64 else None
        )
        self._upload_id = None
        problem = self._completed_problem(etag, crc, parts)
        if problem is not None:
            self._discard_staged()
            raise VerificationError(self._url, problem)
        return etag

    def _completed_problem(
        self, etag: str, crc: str | None, parts: list[tuple[int, str]]
    ) -> str | None:
        """What the completed object's CRC (or multipart ETag of part MD5s) says is wrong."""
        if self._crc64:
            sent = encode_crc64(self._full_crc)
            if crc and crc != sent:
                return f"the store's CRC-64/NVME {crc} is not {sent}"
            return None
        match = _MULTIPART_ETAG.match(etag)
        if match is None:
            return None  # an ETag that is not an MD5 of MD5s (encrypted objects): nothing to check
        expected = hashlib.md5(
            b"".join(self._md5s[number] for number, _ in parts), usedforsecurity=False
        ).hexdigest()
        if match.group(1).lower() != expected or int(match.group(2)) != len(parts):
            return f"the store's ETag {etag} is not {expected}-{len(parts)} (the parts' MD5s)"
        return None

    def _read_back(
        self,
        file: LandedFile,
        check: ContentCheck | None,
        expect: Callable[[str], None] | None,
    ) -> tuple[LandedFile, ContentSummary]:
        """Hash (and check) the staged object as the store gives it back; discard it if bad."""
        sha256, blake3, size = Sha256(), Blake3(), 0
        try:
            for chunk in self._store.bucket.stream(self._staging):
                sha256.update(chunk)
                blake3.update(chunk)
                if check is not None:
                    check.feed(chunk)
                size += len(chunk)
            summary = check.finish() if check is not None else ContentSummary()
            digest = sha256.hexdigest()
            if expect is not None:
                expect(digest)
        except BaseException:
            self._discard_staged()
            raise
        return LandedFile(file.path, size, digest, blake3.hexdigest()), summary

    def _move_staged(self, etag: str, file: LandedFile) -> None:
        """Copy the verified staged object to its key with its digests; drop the staging."""
        try:
            self._uploads.copy_object(self._staging, self._key, etag=etag, size=file.bytes,
                                      metadata=self._object_metadata(file))  # fmt: skip
        finally:
            self._discard_staged()

    def _discard_staged(self) -> None:
        """Remove the staged object and the state; never raises."""
        try:
            self._store.bucket.delete(self._staging)
        except TransferError as exc:
            log.warning("cannot remove a staged object", extra={"error": str(exc)})
        self._store.states.delete(self._name)

    def _object_metadata(self, file: LandedFile) -> dict[str, str]:
        metadata = {**self._metadata, "sha256": file.sha256}
        if file.blake3:
            metadata["blake3"] = file.blake3
        return metadata

    # --- the pump: parts out as the frontier passes them ---

    def _run_pump(self) -> None:
        try:
            self._pump_parts()
        except BaseException as exc:
            with self._cond:
                if self._error is None:
                    self._error = exc
                self._cond.notify_all()

    def _pump_parts(self) -> None:
        """Give each part to the pool once the sink hashed it (at the end: what is left)."""
        while True:
            with self._cond:
                if self._stopped or self._error is not None:
                    return
                final = self._final_size
                if final is not None and (
                    self._scheduled >= final
                    or (self._upload_id is None and final <= part_size(self._total_hint))
                ):
                    return  # all sent, or one PUT will do (``land``)
            span = self._next_part(final)
            if span is None:
                with self._cond:
                    self._cond.wait(POLL_S)
                continue
            self._schedule(*span)

    def _next_part(self, final: int | None) -> tuple[int, int] | None:
        """The bytes of the next part, once they are all hashed (``final``: the file's size)."""
        start = self._scheduled
        size = part_size(self._total_hint, self._next_number())
        last = final if final is not None else self._total_hint
        end = start + size if last is None else min(start + size, last)
        if last is not None and last - end < MIN_PART:
            end = last  # a short tail rides with the part before it: fewer, fuller parts
        frontier = final if final is not None else self._frontier()
        if end > frontier or end <= start:  # not hashed yet, or all sent until ``land``
            return None
        return start, end

    def _next_number(self) -> int:
        return self._first_number + len(self._futures)

    def _frontier(self) -> int:
        sink = self._sink
        return 0 if sink is None else sink.hashed()

    def _schedule(self, start: int, end: int) -> None:
        """The part's CRC (in file order: the object's CRC goes on), else its MD5; then send it."""
        assert self._part is not None
        if self._upload_id is None:
            self._store.abort_stale_uploads(0, key=self._staging)  # one no state names
            self._upload_id, self._crc64 = self._store.create_upload(self._staging,
                                                                     self._metadata)  # fmt: skip
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        region = FileRegion(self._part, start, end - start)
        number = self._next_number()
        if self._crc64:  # no MD5 then: the store checks the CRCs, and MD5 costs CPU
            crc, self._full_crc = region.crcs(self._full_crc)
            checksum = {"x-amz-checksum-crc64nvme": encode_crc64(crc)}
        else:
            self._md5s[number] = region.md5()
            checksum = {"Content-MD5": base64.b64encode(self._md5s[number]).decode("ascii")}
        md5 = self._md5s.get(number, b"").hex()
        sent = SentPart(number, start, end - start, "", md5, self._full_crc)
        self._futures.append(self._pool.submit(self._send_part, sent, region, checksum))
        self._scheduled = end
        self._wait_for_room_in_flight()

    def _wait_for_room_in_flight(self) -> None:
        """Block the pump while PARTS_IN_FLIGHT parts are on their way (raise their failure)."""
        while sum(not f.done() for f in self._futures) >= PARTS_IN_FLIGHT:
            with self._cond:
                if self._stopped or self._error is not None:
                    return
                self._cond.wait(POLL_S)
        for future in self._futures:
            if future.done():
                future.result()

    def _send_part(self, part: SentPart, region: FileRegion, checksum: dict[str, str]) -> None:
        """Send one part (retried twice: its bytes are still in the scratch file), then free it."""
        try:
            etag = self._send_with_retries(part.number, region, checksum)
        except BaseException as exc:
            with self._cond:
                if self._error is None:
                    self._error = exc
                self._cond.notify_all()
            raise
        self._release(region)
        with self._cond:
            self._sent[part.number] = dataclasses.replace(part, etag=etag)
            self._uploaded = _merged([*self._uploaded, (region.offset, region.end)])
            self._cond.notify_all()
        self._save_state()

    def _save_state(self) -> None:
        """Record the parts sent in order from the first (what a killed run may go on from).

        One save at a time, each of what is sent by then: a later save never holds less.
        """
        facts, upload_id = self._facts, self._upload_id
        if facts is None or upload_id is None:
            return  # without a validator and a length, a later run could not trust the parts
        with self._state_lock:
            with self._cond:
                in_order: list[SentPart] = []
                while len(in_order) + 1 in self._sent:
                    in_order.append(self._sent[len(in_order) + 1])
            state = UploadState(facts.url, facts.validator, facts.total, upload_id,
                                self._staging, self._crc64, tuple(in_order))  # fmt: skip
            try:
                self._store.states.save(self._name, state)
            except TransferError as exc:
                log.warning("cannot record the upload's progress", extra={"error": str(exc)})

    def _send_with_retries(self, number: int, region: FileRegion, checksum: dict[str, str]) -> str:
        assert self._upload_id is not None
        for attempt in range(2):
            try:
                return self._uploads.upload_part(self._staging, self._upload_id, number, region,
                                                 checksum)  # fmt: skip
            except TransferError as exc:
                if not exc.retryable:
                    raise
                log.info("part failed; sending it again", extra={"object": self._url,
                         "part": number, "error": str(exc)})  # fmt: skip
                time.sleep(0.5 * (attempt + 1))
        return self._uploads.upload_part(self._staging, self._upload_id, number, region, checksum)

    def _release(self, region: FileRegion) -> None:
        """Punch the sent part out of the scratch file (its disk blocks freed; sizes kept)."""
        if self._fd is None:
            return
        try:
            _punch_hole(self._fd, region.offset, region.length)
        except OSError as exc:
            log.debug("cannot free sent bytes of the scratch file", extra={"error": str(exc)})

    def _room(self) -> int:
        size = part_size(self._total_hint, self._next_number())
        return (PARTS_IN_FLIGHT + 2) * size + AHEAD_BYTES

    def _uploaded_end(self) -> int:
        return self._uploaded[0][1] if self._uploaded and self._uploaded[0][0] == 0 else 0

    def _join_pump(self) -> None:
        """Wait for the pump and every part; raise the first failure."""
        if self._pump is not None:
            self._pump.join()
        for future in self._futures:
            future.result()
        if self._error is not None:
            raise self._error

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` spans sorted and joined where they touch."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _open_for_release(part: Path) -> int:
    """A descriptor of ``part`` to punch the sent parts out with (StorageError if none)."""
    try:
        return os.open(part, os.O_RDWR)
    except OSError as exc:
        raise StorageError(part, f"cannot open ({exc.strerror or exc})") from exc


_libc: ctypes.CDLL | None = None


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): Python's ``os`` has no fallocate with flags."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    result = _libc.fallocate(
        ctypes.c_int(fd),
        ctypes.c_int(_FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE),
        ctypes.c_longlong(offset),
        ctypes.c_longlong(length),
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
