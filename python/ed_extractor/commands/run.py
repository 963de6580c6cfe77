"""``ed-extractor run``: fetch every enabled source of the sources TOML (default: built-in list)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ed_extractor.commands.fetch import fetch_sources
from ed_extractor.commands.shared import (
    Subcommands,
    add_dest_option,
    add_parallel_option,
    settings_with,
)
from ed_extractor.errors import UsageError

NAME = "run"


def add_parser(commands: Subcommands) -> None:
    """Register ``run`` on the top-level subparsers."""
    parser = commands.add_parser(NAME, help="fetch every enabled source of the configuration")
    parser.add_argument("--config", type=Path, help="sources TOML (default: built-in Spansh list)")
    add_dest_option(parser)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these sources")
    add_parallel_option(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per source")


def run(args: argparse.Namespace) -> int:
    """Fetch the sources chosen (``--only``, else every enabled one); exit 1 when one failed."""
    from ed_extractor.settings import load_sources_file

    settings = settings_with(dest=args.dest, config=args.config, parallel=args.parallel)
    sources = load_sources_file(settings.config)
    specs = sources.sources
    if args.only:
        known = {spec.name for spec in specs}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise UsageError(f"--only names unknown sources: {', '.join(unknown)}")
        specs = [spec for spec in specs if spec.name in args.only]
    else:
        specs = [spec for spec in specs if spec.enabled]
    return fetch_sources(settings, specs, args.json, parallel=settings.sources_at_once(sources))
