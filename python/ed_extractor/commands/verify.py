"""``ed-extractor verify``: re-hash every recorded file (shared lock) or object (streamed)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ed_extractor.commands.shared import (
    EXIT_FAILED,
    EXIT_OK,
    Subcommands,
    add_destination_options,
    settings_with,
)
from ed_extractor.errors import UsageError

# What only running the command needs is imported in run(), so that the parser stays cheap.
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ed_extractor.manifest import Manifest, ManifestRecord
    from ed_extractor.manifest.object_store import ObjectRecord
    from ed_extractor.pipeline.verify import FileCheck
    from ed_extractor.settings import Settings

NAME = "verify"


def add_parser(commands: Subcommands) -> None:
    """Register ``verify`` on the top-level subparsers."""
    verify = commands.add_parser(
        NAME, help="re-hash every recorded file and compare it with the manifest"
    )
    add_destination_options(verify)
    verify.add_argument("--only", nargs="+", metavar="NAME", help="check only these files")
    verify.add_argument(
        "--algo",
        choices=("auto", "blake3", "sha256"),
        default="auto",
        help="auto (default): BLAKE3 where recorded, else SHA-256",
    )
    verify.add_argument(
        "--record", action="store_true", help="append each verdict to the manifest's history"
    )
    verify.add_argument(
        "--quick",
        action="store_true",
        help="s3:// destinations: compare the store's size, metadata and checksums, read no body",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object per file")


def _unknown(names: Iterable[str], only: list[str] | None) -> None:
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise UsageError(f"--only names files the manifest does not record: {', '.join(unknown)}")


def _selected(records: list[ManifestRecord], only: list[str] | None) -> list[ManifestRecord]:
    _unknown((record.name for record in records), only)
    return [record for record in records if not only or record.name in only]


def _selected_objects(entries: list[ObjectRecord], only: list[str] | None) -> list[ObjectRecord]:
    _unknown((entry.record.name for entry in entries), only)
    return [entry for entry in entries if not only or entry.record.name in only]


def _report(checks: Iterable[FileCheck], store: Manifest, args: argparse.Namespace) -> bool:
    """Print (and with --record, append) each verdict as it comes; True if every one is ok."""
    all_ok = True
    for check in checks:
        all_ok = all_ok and check.status == "ok"
        if args.record:
            store.record_verification(
                check.name, check.status, check.algo,
                bytes_found=check.bytes, elapsed_s=check.elapsed_s,
            )  # fmt: skip
        if args.json:
            print(check.model_dump_json(), flush=True)
        else:
            print(f"{check.status:<13} {check.algo:<6} {check.name}  {check.path}", flush=True)
    return all_ok


def _verify_objects(settings: Settings, args: argparse.Namespace) -> bool:
    """Check the objects the store's manifest records; no lock (nothing local is read)."""
    from ed_extractor.pipeline.progress import progress_for_terminal
    from ed_extractor.pipeline.session import object_manifest_session
    from ed_extractor.pipeline.verify import check_objects

    with object_manifest_session(settings) as store:
        entries = _selected_objects(store.object_records(), args.only)
        checks = check_objects(
            store.bucket, entries, args.algo, progress_for_terminal(), quick=args.quick
        )
        return _report(checks, store, args)


def run(args: argparse.Namespace) -> int:
    """Check the files; exit 0 when every one is ok, 1 otherwise."""
    from ed_extractor.manifest import ManifestStore
    from ed_extractor.pipeline.lock import destination_lock
    from ed_extractor.pipeline.progress import progress_for_terminal
    from ed_extractor.pipeline.verify import check_records

    settings = settings_with(dest=args.dest, manifest=args.manifest)
    if settings.object_dest is not None:
        return EXIT_OK if _verify_objects(settings, args) else EXIT_FAILED
    if args.quick:
        raise UsageError("--quick is for an s3:// destination (a folder's files are re-hashed)")
    manifest = settings.manifest_path
    if not manifest.is_file():
        raise UsageError(f"no manifest at {manifest}")
    # The lock guards the folder the files live in: --dest, else a --manifest's own folder.
    folder = manifest.parent if args.dest is None and args.manifest is not None else settings.dest
    with (
        destination_lock(folder, wait_s=settings.lock_wait_s, shared=True),
        ManifestStore(manifest, create=False, journal=settings.manifest_journal) as store,
    ):
        records = _selected(store.records(), args.only)
        all_ok = _report(check_records(records, args.algo, progress_for_terminal()), store, args)
    return EXIT_OK if all_ok else EXIT_FAILED
