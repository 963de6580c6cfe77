"""``ed-extractor verify``: re-hash every recorded file, under the destination's shared lock."""

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
    from ed_extractor.manifest import ManifestRecord

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
    verify.add_argument("--json", action="store_true", help="one JSON object per file")


def _selected(records: list[ManifestRecord], only: list[str] | None) -> list[ManifestRecord]:
    if not only:
        return records
    unknown = sorted(set(only) - {record.name for record in records})
    if unknown:
        raise UsageError(f"--only names files the manifest does not record: {', '.join(unknown)}")
    return [record for record in records if record.name in only]


def run(args: argparse.Namespace) -> int:
    """Check the files; exit 0 when every one is ok, 1 otherwise."""
    from ed_extractor.manifest import ManifestStore
    from ed_extractor.pipeline.lock import destination_lock
    from ed_extractor.pipeline.progress import progress_for_terminal
    from ed_extractor.pipeline.verify import check_records

    settings = settings_with(dest=args.dest, manifest=args.manifest)
    manifest = settings.manifest_path
    if not manifest.is_file():
        raise UsageError(f"no manifest at {manifest}")
    # The lock guards the folder the files live in: --dest, else a --manifest's own folder.
    folder = manifest.parent if args.dest is None and args.manifest is not None else settings.dest
    all_ok = True
    with (
        destination_lock(folder, wait_s=settings.lock_wait_s, shared=True),
        ManifestStore(manifest, create=False) as store,
    ):
        records = _selected(store.records(), args.only)
        for check in check_records(records, args.algo, progress_for_terminal()):
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
    return EXIT_OK if all_ok else EXIT_FAILED
