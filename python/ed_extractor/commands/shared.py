"""What several subcommands share: exit codes, argument types, options, settings, outcomes."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from ed_extractor.logs import configure_logging

# Only the names: the modules behind them load when a command runs, so that the parser stays cheap.
if TYPE_CHECKING:
    from ed_extractor.pipeline.spansh_dump import SourceOutcome
    from ed_extractor.settings import Settings

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The top-level subparsers, on which each command module registers its parser."""

EXIT_OK: Final = 0
"""Every source downloaded or unchanged (``verify``: every file ok)."""
EXIT_FAILED: Final = 1
"""At least one source, file or id failed."""
EXIT_USAGE: Final = 2
"""A usage or configuration error, reported in one line on stderr."""


def positive_number(text: str) -> float:
    """An argparse type: a number > 0 (seconds, requests per second)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (sources at once, a burst)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_dest_option(parser: argparse.ArgumentParser) -> None:
    """``--dest``: a folder or ``s3://BUCKET/PREFIX`` (kept as text: a Path would fold ``//``)."""
    parser.add_argument(
        "--dest",
        metavar="DEST",
        help="a folder or s3://BUCKET/PREFIX (default: $ED_EXTRACTOR_DEST or ./data)",
    )


def add_destination_options(parser: argparse.ArgumentParser) -> None:
    """``--dest`` and ``--manifest``: where the files and their records are."""
    add_dest_option(parser)
    parser.add_argument(
        "--manifest", type=Path, help="manifest file (default: <dest>/manifest.sqlite3)"
    )


def add_parallel_option(parser: argparse.ArgumentParser) -> None:
    """``--parallel K``: how many sources a run works on at once."""
    parser.add_argument(
        "--parallel",
        type=positive_int,
        metavar="K",
        help="sources worked on at once (default: $ED_EXTRACTOR_PARALLEL, [defaults], else 2)",
    )


def settings_with(**options: Any) -> Settings:
    """The settings from the environment, with the options given (not None) winning; logging set."""
    from ed_extractor.settings import Settings

    settings = Settings.from_environment(**{k: v for k, v in options.items() if v is not None})
    configure_logging(settings.log_format)
    return settings


def print_outcomes(outcomes: Iterable[SourceOutcome], as_json: bool) -> int:
    """Print each outcome as it comes (JSON or a readable line); return the exit code of all."""
    failed = False
    for outcome in outcomes:
        failed = failed or outcome.status == "failed"
        if as_json:
            print(outcome.model_dump_json(), flush=True)
        else:
            detail = outcome.error if outcome.status == "failed" else outcome.path
            print(f"{outcome.status:<10} {outcome.name}  {detail}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK
