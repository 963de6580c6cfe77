"""``ed-extractor run``: fetch every enabled source of the sources TOML (default: built-in list)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ed_extractor.commands.fetch import fetch_sources
from ed_extractor.commands.shared import (
    EXIT_OK,
    Subcommands,
    add_dest_option,
    add_parallel_option,
    settings_with,
)
from ed_extractor.errors import UsageError

if TYPE_CHECKING:
    from ed_extractor.pipeline.shards import Shard
    from ed_extractor.settings import SourceSpec

NAME = "run"

log = logging.getLogger(__name__)


def _shard(text: str) -> Shard:
    """An argparse type: ``I/N`` with 0 <= I < N."""
    from ed_extractor.pipeline.shards import parse_shard

    try:
        return parse_shard(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Subcommands) -> None:
    """Register ``run`` on the top-level subparsers."""
    parser = commands.add_parser(NAME, help="fetch every enabled source of the configuration")
    parser.add_argument("--config", type=Path, help="sources TOML (default: built-in Spansh list)")
    add_dest_option(parser)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these sources")
    add_parallel_option(parser)
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="only the sources whose name hashes to shard I of N (default: $JOB_COMPLETION_INDEX"
        " of $ED_EXTRACTOR_SHARDS when both are set)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per source")


def _chosen(specs: list[SourceSpec], only: list[str] | None) -> list[SourceSpec]:
    """The sources ``--only`` names, else every enabled one."""
    if not only:
        return [spec for spec in specs if spec.enabled]
    unknown = sorted(set(only) - {spec.name for spec in specs})
    if unknown:
        raise UsageError(f"--only names unknown sources: {', '.join(unknown)}")
    return [spec for spec in specs if spec.name in only]


def run(args: argparse.Namespace) -> int:
    """Fetch the sources chosen (``--only``, else every enabled one) of the run's shard.

    Exit 1 when one failed.
    """
    from ed_extractor.pipeline.shards import claim_folder, shard_of_run, shard_settings
    from ed_extractor.settings import load_sources_file

    settings = settings_with(dest=args.dest, config=args.config, parallel=args.parallel)
    sources = load_sources_file(settings.config)
    if sources.dest is not None and args.dest is None and not os.environ.get("ED_EXTRACTOR_DEST"):
        settings = settings_with(dest=sources.dest, config=args.config, parallel=args.parallel)
    shard = shard_of_run(args.shard, settings.shards, os.environ)
    settings = shard_settings(settings, shard)
    specs = _chosen(sources.sources, args.only)
    if shard is not None:
        specs = shard.select(specs)
    if settings.dest_url is None:  # an object store is shared by all shards; a folder is not
        claim_folder(settings.dest, shard)
    if not specs:
        log.info("no source to fetch in this shard", extra={"shard": shard and shard.label})
        return EXIT_OK
    return fetch_sources(
        settings,
        specs,
        args.json,
        parallel=settings.sources_at_once(sources),
        shard=None if shard is None else shard.label,
    )
