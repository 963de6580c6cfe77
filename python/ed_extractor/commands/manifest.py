"""``ed-extractor manifest``: list the files the manifest records."""

from __future__ import annotations

import argparse

from ed_extractor.commands.shared import (
    EXIT_OK,
    Subcommands,
    add_destination_options,
    settings_with,
)
from ed_extractor.errors import UsageError

NAME = "manifest"


def add_parser(commands: Subcommands) -> None:
    """Register ``manifest`` on the top-level subparsers."""
    manifest = commands.add_parser(NAME, help="list the files recorded in the manifest")
    add_destination_options(manifest)
    manifest.add_argument("--json", action="store_true", help="one JSON object per source")


def run(args: argparse.Namespace) -> int:
    """Print one line per recorded file; a missing manifest is a usage error."""
    from ed_extractor.manifest import ManifestStore

    settings = settings_with(dest=args.dest, manifest=args.manifest)
    path = settings.manifest_path
    if not path.exists():
        raise UsageError(f"no manifest at {path}")
    with ManifestStore(path) as store:
        records = store.records()
    for record in records:
        if args.json:
            print(record.model_dump_json())
        else:
            print(f"{record.name:<32} {record.bytes:>14} {record.sha256}  {record.path}")
    return EXIT_OK
