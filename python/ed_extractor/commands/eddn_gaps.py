"""``ed-extractor eddn gaps``: the intervals in which no EDDN replica was receiving."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from ed_extractor.commands.shared import EXIT_OK, Subcommands, add_dest_option, settings_with
from ed_extractor.errors import UsageError

# What only running the command needs is imported in run_gaps(), so that the parser stays cheap.

NAME = "gaps"


def iso_instant(text: str) -> datetime:
    """An argparse type: an ISO 8601 time (no offset: UTC)."""
    from ed_extractor.pipeline.eddn_coverage import parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None


def add_gaps_parser(subparsers: Subcommands) -> argparse.ArgumentParser:
    """Register ``gaps`` on ``subparsers`` (the ``eddn`` command's); return its parser."""
    parser = subparsers.add_parser(NAME, help="intervals in which no EDDN replica was receiving")
    add_dest_option(parser)
    parser.add_argument(
        "--since",
        type=iso_instant,
        metavar="ISO8601",
        help="look from this time on (default: the earliest event on record)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per gap")
    return parser


def run_gaps(args: argparse.Namespace) -> int:
    """Print every gap since ``--since`` up to now; exit 0 (gaps are data, not a failure)."""
    from ed_extractor.pipeline.eddn_coverage import REPLICAS_FOLDER, Coverage, format_instant

    settings = settings_with(dest=args.dest)
    if settings.object_dest is not None:
        raise UsageError(
            f"eddn gaps reads a local folder; {settings.dest_url} is an object-store destination"
        )
    coverage = Coverage.read(settings.dest, settings.eddn_heartbeat_s)
    since = args.since or coverage.earliest()
    found = coverage.gaps(since)
    for gap in found:
        if args.json:
            print(json.dumps(gap.as_dict()), flush=True)
        else:
            start, end = format_instant(gap.start), format_instant(gap.end)
            print(f"gap {start} .. {end}  {gap.seconds:.1f} s", flush=True)
    if not args.json and not found:
        where = settings.dest / REPLICAS_FOLDER
        print(f"no gaps since {format_instant(since)}" if since else f"no coverage log in {where}")
    return EXIT_OK
