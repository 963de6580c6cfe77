"""``ed-extractor fetch SOURCE ...``: download the sources named on the command line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, get_args

from ed_extractor.commands.shared import (
    Subcommands,
    add_destination_options,
    add_parallel_option,
    print_outcomes,
    settings_with,
)
from ed_extractor.errors import UsageError
from ed_extractor.vocabulary import ContentRegime, normalize_sha256

# What only downloading needs (the HTTP client, the manifest, metrics, the progress bar, the content
# checks) is imported in run(), so that the parser stays cheap.
if TYPE_CHECKING:
    from ed_extractor.settings import ConnectionsSetting, Settings, SourceSpec

NAME = "fetch"


def _connections(value: str) -> ConnectionsSetting:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return int(value)


def _sha256_hex(value: str) -> str:
    try:
        return normalize_sha256(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a SHA-256 hex digest: {value!r}") from None


def add_parser(commands: Subcommands) -> None:
    """Register ``fetch`` on the top-level subparsers."""
    fetch = commands.add_parser(NAME, help="download sources into the destination")
    fetch.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="an http(s):// URL, an s3://BUCKET/KEY, a magnet: link or a local .torrent file",
    )
    add_destination_options(fetch)
    fetch.add_argument("--name", help="file name to store a single SOURCE under")
    fetch.add_argument(
        "--connections",
        type=_connections,
        metavar="N|auto",
        help="ranged connections per file (default: $ED_EXTRACTOR_CONNECTIONS or auto)",
    )
    fetch.add_argument(
        "--expect",
        choices=get_args(ContentRegime),
        help="what the content must be, whatever the URL's name implies (binary: anything)",
    )
    fetch.add_argument(
        "--expect-sha256",
        type=_sha256_hex,
        metavar="HEX",
        help="fail unless the stored file's SHA-256 is this (64 hex digits)",
    )
    fetch.add_argument("--no-verify", action="store_true", help="skip the content checks")
    add_parallel_option(fetch)
    fetch.add_argument("--json", action="store_true", help="one JSON object per source")


def is_local_torrent(source: str) -> bool:
    """True for a path (no scheme) to a ``.torrent`` file: its payload is the source."""
    from urllib.parse import urlsplit

    from ed_extractor.paths import TORRENT_SUFFIX

    return source.lower().endswith(TORRENT_SUFFIX) and not urlsplit(source).scheme


def _source_spec(source: str, args: argparse.Namespace) -> SourceSpec:
    """The source a SOURCE argument names: a URL, or a local torrent as in the sources TOML."""
    from ed_extractor.settings import SourceSpec

    where = {"torrent": source} if is_local_torrent(source) else {"url": source}
    return SourceSpec(**where, name=args.name, expect=args.expect, expect_sha256=args.expect_sha256)


def run(args: argparse.Namespace) -> int:
    """Fetch every SOURCE; exit 1 when at least one failed."""
    if args.name is not None and len(args.sources) != 1:
        raise UsageError("--name takes exactly one URL")
    settings = settings_with(
        dest=args.dest,
        manifest=args.manifest,
        parallel=args.parallel,
        connections=args.connections,
        verify=False if args.no_verify else None,
    )
    specs = [_source_spec(source, args) for source in args.sources]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # they would share one part file and one manifest row
        raise UsageError(f"several URLs would be stored as {twice[0]!r}; fetch them one by one")
    return fetch_sources(settings, specs, args.json, parallel=settings.sources_at_once())


def fetch_sources(
    settings: Settings,
    specs: Sequence[SourceSpec],
    as_json: bool,
    *,
    parallel: int,
    shard: str | None = None,
) -> int:
    """Fetch ``specs`` in one locked destination session, printing each outcome as it comes.

    ``shard`` ("I/N") labels every outcome of a sharded run.
    """
    from ed_extractor.metrics import RunMetrics
    from ed_extractor.pipeline.progress import progress_for_terminal
    from ed_extractor.pipeline.session import destination_session
    from ed_extractor.pipeline.spansh_dump import DumpFetcher
    from ed_extractor.retry import RetryPolicy

    deadline = None if settings.deadline_s is None else time.monotonic() + settings.deadline_s
    with destination_session(settings) as session:
        store, client = session.store, session.client
        fetcher = DumpFetcher(
            client,
            store,
            settings.dest,
            progress=progress_for_terminal(),
            verify=settings.verify,
            s3=session.s3,
            connections=settings.connections,
            blake3=settings.blake3,
            retry=RetryPolicy.from_settings(settings, deadline),
            destination=session.destination,
        )
        metrics = RunMetrics.from_settings(settings)  # keeps the outcomes as they are printed
        outcomes = fetcher.fetch_all(specs, parallel=parallel)
        if shard is not None:
            outcomes = (outcome.model_copy(update={"shard": shard}) for outcome in outcomes)
        code = print_outcomes(metrics.observe(outcomes), as_json)
        metrics.export(store)
        return code
