"""``ed-extractor manifest``: list the files the manifest records."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ed_extractor.commands.shared import (
    EXIT_OK,
    Subcommands,
    add_destination_options,
    settings_with,
)
from ed_extractor.errors import UsageError

if TYPE_CHECKING:
    from ed_extractor.manifest import ManifestRecord
    from ed_extractor.settings import Settings

NAME = "manifest"


def add_parser(commands: Subcommands) -> None:
    """Register ``manifest`` on the top-level subparsers."""
    manifest = commands.add_parser(NAME, help="list the files recorded in the manifest")
    add_destination_options(manifest)
    manifest.add_argument("--json", action="store_true", help="one JSON object per source")


def _recorded(settings: Settings) -> list[ManifestRecord]:
    """The current records of the destination: its SQLite file, or its objects' records."""
    from ed_extractor.manifest import ManifestStore

    if settings.object_dest is not None:
        from ed_extractor.pipeline.session import object_manifest_session  # loads httpx

        with object_manifest_session(settings) as objects:
            return objects.records()
    path = settings.manifest_path
    if not path.exists():
        raise UsageError(f"no manifest at {path}")
    with ManifestStore(path, journal=settings.manifest_journal) as store:
        return store.records()


def run(args: argparse.Namespace) -> int:
    """Print one line per recorded file; a missing manifest is a usage error."""
    settings = settings_with(dest=args.dest, manifest=args.manifest)
    records = _recorded(settings)
    for record in records:
        if args.json:
            print(record.model_dump_json())
        else:
            print(f"{record.name:<32} {record.bytes:>14} {record.sha256}  {record.path}")
    return EXIT_OK
