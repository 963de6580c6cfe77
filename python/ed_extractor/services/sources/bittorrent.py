"""The BitTorrent source: a torrent's payload through libtorrent, verified per file, landed."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx

from ed_extractor.errors import (
    ConfigError,
    InvalidURLError,
    StorageError,
    TransferError,
    UnexpectedContentError,
    VerificationError,
)
from ed_extractor.hashing import PartSink
from ed_extractor.http import httpx_errors_as_transfer_errors, status_error
from ed_extractor.paths import (
    is_magnet,
    name_from_url,
    part_path,
    resolve_inside,
    sanitize_name,
    validate_url,
)
from ed_extractor.services.file_transfer.base import (
    ContentCheck,
    ContentSummary,
    DownloadRequest,
    DownloadResult,
    LandedFile,
    ProgressReporter,
    RecordedFile,
    StoredFile,
)
from ed_extractor.services.file_transfer.landing import LOCAL_FOLDER, landing_for
from ed_extractor.services.file_transfer.range_engine import sink_verifier
from ed_extractor.services.file_transfer.resume import sidecar_path
from ed_extractor.services.source_probe.models import HeadInfo
from ed_extractor.services.source_probe.sniff import (
    SAMPLE_SIZE,
    check_expected,
    expectation_for,
    sniff_mime,
)
from ed_extractor.services.sources.base import CheckLookup
from ed_extractor.services.sources.torrent_session import (
    TorrentOptions,
    TorrentSession,
    info_hash_of,
    libtorrent,
)
from ed_extractor.vocabulary import Regime

MAX_METAINFO_BYTES: Final = 64 << 20  # a v2 torrent of a 100 GB file carries a few MB of hashes


def validator_of(hashes: Any) -> str:
    """A torrent's manifest validator: ``btih:<hex>`` (v1, hybrid), else ``btmh:1220<hex>`` (v2)."""
    if hashes.has_v1():
        return f"btih:{hashes.v1}"
    return f"btmh:1220{hashes.v2}"  # a multihash: sha2-256, 32 bytes, as in magnet links


@dataclass(frozen=True)
class PlannedFile:
    """Where one payload file of the torrent goes: inside the part folder, then its final place."""

    index: int
    relative: str  # its path inside the part folder (libtorrent's name for it)
    name: str  # its manifest name
    final_path: Path
    size: int


def plan_files(info: Any, request: DownloadRequest) -> list[PlannedFile]:
    """Safe places for the torrent's payload files (pad files are not payload).

    A single file is stored under the source's name when the source names it, else under the
    torrent's own file name; several files go to a folder named after the source. Every segment
    is sanitised like a URL's file name and every path is resolved inside the destination.
    """
    layout = info.layout()
    pad = libtorrent().file_storage.flag_pad_file
    indices = [i for i in range(layout.num_files()) if not layout.file_flags(i) & pad]
    dest = request.final_path.parent
    part_folder = part_path(request.final_path).name
    planned: list[PlannedFile] = []
    for index in indices:
        segments = layout.file_path(index).replace("\\", "/").split("/")
        if len(indices) == 1:
            named = request.name != name_from_url(request.url)
            relative = request.name if named else _safe_segment(segments[-1])
            name = relative
        else:
            relative = "/".join(_safe_segment(s) for s in segments[1:] or segments)
            name = f"{request.name}/{relative}"
        resolve_inside(dest, f"{part_folder}/{relative}")
        planned.append(
            PlannedFile(
                index, relative, name, resolve_inside(dest, name), int(layout.file_size(index))
            )
        )
    seen: set[str] = set()
    for file in planned:
        if file.relative in seen:
            raise VerificationError(
                request.url, f"the torrent names {file.relative!r} twice (after sanitising)"
            )
        seen.add(file.relative)
    return planned


def _safe_segment(segment: str) -> str:
    try:
        return sanitize_name(segment)
    except ConfigError:  # "..", "", only dots or control characters
        return "_"


class BitTorrentSource:
    """Torrent metainfo (from a URL or a local file) or a magnet link: the payload, not the torrent.

    libtorrent fills ``<name>.part/`` (its resume data in ``<name>.part.resume``); once every piece
    passed its hash and the data reached the disk, each file is hashed (SHA-256, BLAKE3) and
    checked by the part sink (the check its sniffed type calls for), and moved into place. The
    info-hash is the validator: same torrent, files intact: unchanged. The session meets the swarm
    with ``options`` (else the defaults).
    """

    kind: ClassVar[str] = "bittorrent"

    def __init__(self, options: TorrentOptions | None = None) -> None:
        self._options = options or TorrentOptions()

    def head(self, client: httpx.Client, url: str) -> None:
        """Nothing to ask before the body: the payload comes from peers (a magnet is checked)."""
        if is_magnet(url):
            validate_url(url)

    def ranged_sample(self, client: httpx.Client, url: str) -> HeadInfo:
        """A torrent has no sample to take; its files are sniffed once downloaded."""
        raise InvalidURLError(url, "a torrent is fetched from peers; it cannot be probed")

    def regime(self, content: Regime) -> Regime:
        """Every file of a torrent is recorded as ``bittorrent``."""
        return "bittorrent"

    def download(
        self,
        client: httpx.Client,
        request: DownloadRequest,
        check: ContentCheck | None,
        checks: CheckLookup,
        progress: ProgressReporter,
    ) -> DownloadResult:
        """Fetch the torrent's payload into place unless the same torrent is stored intact."""
        params = self._metainfo(client, request)
        validator = validator_of(info_hash_of(params))
        plan = plan_files(params.ti, request) if params.ti is not None else None
        stored = _already_stored(request, validator, plan)
        if stored is not None:
            return stored
        if plan is not None:
            _check_size(request, plan)
        part_folder = _make_part_folder(request.final_path)
        with TorrentSession(request.url, self._options, sidecar_path(request.final_path)) as s:
            plan, info = _add_torrent(s, params, plan, request, part_folder)
            transferred = s.download(request.name, progress, request.deadline)
            s.flush_and_close()
            files = _verify(request, plan, part_folder, transferred, checks)
            _move_into_place(plan, part_folder, request, files)
            stays_local = landing_for(request).keeps_parts  # the files to seed from are here
            if self._options.seed_s > 0 and stays_local:
                renamed = {file.index: file.name for file in plan}
                s.seed(info, renamed, request.final_path.parent, self._options.seed_s,
                       request.deadline)  # fmt: skip
        return _downloaded(request, validator, files, transferred)

    def _metainfo(self, client: httpx.Client, request: DownloadRequest) -> Any:
        """The torrent's add_torrent_params: metadata from a file or URL, or a magnet's hashes."""
        lt = libtorrent()
        url = request.url
        if is_magnet(url):
            try:
                params = lt.parse_magnet_uri(url)
            except RuntimeError as exc:
                raise TransferError(url, f"unusable magnet link: {exc}", retryable=False) from None
            params.flags |= lt.torrent_flags.upload_mode  # no payload before the files are renamed
            return params
        data = _read_local(url) if url.startswith("file:") else _get(client, url)
        try:
            return lt.load_torrent_buffer(data)
        except RuntimeError as exc:
            raise VerificationError(url, f"not usable torrent metainfo: {exc}") from None


def _make_part_folder(final_path: Path) -> Path:
    """Create (or keep) the folder libtorrent downloads into; StorageError if it cannot be."""
    part_folder = part_path(final_path)
    try:
        part_folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise StorageError(part_folder, f"cannot create ({exc.strerror or exc})") from exc
    return part_folder


def _add_torrent(
    session: TorrentSession,
    params: Any,
    plan: list[PlannedFile] | None,
    request: DownloadRequest,
    part_folder: Path,
) -> tuple[list[PlannedFile], Any]:
    """Add the torrent to ``session``; its plan (a magnet's once its metadata came) and info."""
    if plan is not None:
        params.renamed_files = {f.index: f.relative for f in plan}
    session.add(params, part_folder, request.peers)
    info = session.wait_for_metadata(request.deadline)
    if plan is None:
        plan = plan_files(info, request)
        _check_size(request, plan)
        _rename(session.handle, plan)
    return plan, info


def _move_into_place(
    plan: list[PlannedFile], part_folder: Path, request: DownloadRequest, files: list[StoredFile]
) -> None:
    """Land every verified file from the part folder at its final place, then drop the folder.

    At an object-store destination each file is uploaded from the part folder: the whole torrent
    sits in the scratch folder first (``_check_size`` asks for the room).
    """
    for file, stored in zip(plan, files, strict=True):
        file.final_path.parent.mkdir(parents=True, exist_ok=True)
        landed = LandedFile(file.final_path, stored.bytes, stored.sha256, stored.blake3)
        landing_for(request, file.final_path).land(part_folder / file.relative, landed)
    discard_part_folder(request.final_path)


def _downloaded(
    request: DownloadRequest, validator: str, files: list[StoredFile], transferred: int
) -> DownloadResult:
    """The result of a download: one file as the source's own, several as a folder of files."""
    single = len(files) == 1
    return DownloadResult(
        status="downloaded",
        final_url=request.url,
        etag=validator,
        path=files[0].path if single else request.final_path,
        bytes=sum(f.bytes for f in files),
        sha256=files[0].sha256 if single else None,
        bytes_transferred=transferred,
        files=tuple(files),
    )


def _read_local(url: str) -> bytes:
    path = Path(url2pathname(urlsplit(url).path))
    try:
        with path.open("rb") as file:
            data = file.read(MAX_METAINFO_BYTES + 1)
    except OSError as exc:
        raise TransferError(url, f"cannot read the torrent file: {exc.strerror or exc}",
                            retryable=False) from None  # fmt: skip
    if len(data) > MAX_METAINFO_BYTES:
        raise TransferError(url, "torrent file too large", retryable=False)
    return data


def _get(client: httpx.Client, url: str) -> bytes:
    """GET the metainfo itself (small; bounded)."""
    data = bytearray()
    with (
        httpx_errors_as_transfer_errors(url, "GET"),
        client.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response,
    ):
        if response.status_code != httpx.codes.OK:
            raise status_error(url, response, "GET")
        for chunk in response.iter_raw():
            data += chunk
            if len(data) > MAX_METAINFO_BYTES:
                raise TransferError(url, "torrent metainfo too large", retryable=False)
    return bytes(data)


def _already_stored(
    request: DownloadRequest, validator: str, plan: list[PlannedFile] | None
) -> DownloadResult | None:
    """The stored files of the same torrent, when every one is intact; else None."""
    records = _recorded_files(request, validator, plan)
    if not records or not _intact_as_expected(request, records):
        return None
    root = request.final_path.parent  # the destination's folder (an object store's scratch)
    return DownloadResult(
        status="unchanged",
        final_url=request.url,
        etag=validator,
        files=tuple(
            StoredFile(
                name=r.name,
                path=root / r.name,
                bytes=r.bytes,
                sha256=r.sha256,
                mime_type=r.mime_type,
                summary=ContentSummary(r.uncompressed_bytes, r.records),
            )
            for r in records
        ),
    )


def _recorded_files(
    request: DownloadRequest, validator: str, plan: list[PlannedFile] | None
) -> list[RecordedFile] | None:
    """The files recorded with the torrent's validator, in the plan's order (all, without a plan).

    None when nothing can be looked up or a planned file has no record.
    """
    if request.recorded_with is None:
        return None
    records = list(request.recorded_with(validator))
    if plan is None:
        return records
    by_name = {record.name: record for record in records}
    if any(file.name not in by_name for file in plan):
        return None
    return [by_name[file.name] for file in plan]


def _intact_as_expected(request: DownloadRequest, records: list[RecordedFile]) -> bool:
    """Every file is stored whole, and the one file has the SHA-256 the source expects, if any."""
    destination, root = request.destination or LOCAL_FOLDER, request.final_path.parent
    if not all(destination.holds(root / r.name, r.bytes, r.sha256) for r in records):
        return False
    return request.expect_sha256 is None or [r.sha256 for r in records] == [request.expect_sha256]


def _rename(handle: Any, plan: list[PlannedFile]) -> None:
    """Give a magnet's files their safe names, then let the payload come."""
    layout = handle.torrent_file().layout()
    for file in plan:
        if layout.file_path(file.index) != file.relative:
            handle.rename_file(file.index, file.relative)
    handle.unset_flags(libtorrent().torrent_flags.upload_mode)


def _check_size(request: DownloadRequest, plan: list[PlannedFile]) -> None:
    """The torrent fits ``max_bytes``, and its folder's disk (the scratch of an object store)."""
    total = sum(file.size for file in plan)
    if request.max_bytes is not None and total > request.max_bytes:
        discard_part_folder(request.final_path)
        raise TransferError(
            request.url, f"torrent of {total} bytes exceeds max_bytes ({request.max_bytes})",
            retryable=False,
        )  # fmt: skip
    folder = request.final_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    held = part_path(request.final_path)
    free = shutil.disk_usage(folder).free + (_bytes_in(held) if held.exists() else 0)
    if total > free:
        raise StorageError(held, f"not enough space for the torrent: needs {total} bytes, "
                                 f"{free} free")  # fmt: skip


def _bytes_in(folder: Path) -> int:
    """The bytes a kept part folder already holds (they count as room for the torrent)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _verify(
    request: DownloadRequest,
    plan: list[PlannedFile],
    part_folder: Path,
    transferred: int,
    checks: CheckLookup,
) -> list[StoredFile]:
    """Hash and check every file in the part folder; nothing moves unless all are good."""
    total = sum(file.size for file in plan) or 1
    files: list[StoredFile] = []
    try:
        for file in plan:
            digest = _digest(part_folder / file.relative, file.size, request, file.name, checks)
            if len(plan) == 1:
                request.check_sha256(digest.sha256)
            files.append(
                StoredFile(
                    name=file.name,
                    path=file.final_path,
                    bytes=file.size,
                    sha256=digest.sha256,
                    blake3=digest.blake3,
                    mime_type=digest.mime_type,
                    summary=digest.summary,
                    bytes_transferred=transferred * file.size // total,
                )
            )
    except (VerificationError, UnexpectedContentError):
        discard_part_folder(request.final_path)
        raise
    return files


def _digest(
    path: Path, size: int, request: DownloadRequest, name: str, checks: CheckLookup
) -> _Digest:
    """SHA-256 (and BLAKE3), sniffed type and content summary of one file.

    The file is read back by the part sink, which hashes and checks it on its own threads.
    """
    with path.open("rb") as file:
        mime_type = sniff_mime(file.read(SAMPLE_SIZE))
    check: ContentCheck | None = None
    if request.verify:
        check_expected(request.url, expectation_for(name), mime_type)
        check = checks(mime_type, dataclasses.replace(request, name=name))
    sink = PartSink(
        path, size, keep=True, written=[(0, size)] if size else [],
        blake3=request.blake3, verifier=sink_verifier(check),
    )  # fmt: skip
    try:
        sha256 = sink.finish(fsync=False)
    except ValueError as exc:  # the content check
        raise VerificationError(request.url, f"{name}: {exc}") from exc
    finally:
        sink.abort()
    summary = check.finish() if check is not None else ContentSummary()
    return _Digest(sha256, sink.blake3_hexdigest(), mime_type, summary)


@dataclass(frozen=True)
class _Digest:
    sha256: str
    blake3: str | None
    mime_type: str
    summary: ContentSummary


def discard_part_folder(final_path: Path) -> None:
    """Remove a torrent's part folder and its resume data."""
    shutil.rmtree(part_path(final_path), ignore_errors=True)
    sidecar_path(final_path).unlink(missing_ok=True)
