"""The command line: builds the parser from the command modules and dispatches to them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, cast

from ed_extractor import __version__
from ed_extractor.commands import api, eddn, fetch, manifest, probe, run, verify
from ed_extractor.commands.shared import EXIT_FAILED, EXIT_USAGE, Subcommands
from ed_extractor.errors import EdExtractorError, UsageError
from ed_extractor.hashing import BACKEND
from ed_extractor.logs import configure_logging


class CommandModule(Protocol):
    """A module of ``commands/``: it registers one subcommand and runs it.

    It imports what only running it needs inside run(), so that --version, probe and manifest
    start quickly.
    """

    NAME: str

    def add_parser(self, commands: Subcommands) -> None:
        """Register the subcommand ``NAME`` and its arguments."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the subcommand; return the exit code."""


COMMANDS: dict[str, CommandModule] = {
    module.NAME: module for module in (probe, fetch, run, manifest, verify, api, eddn)
}
"""Every subcommand by name, in the order --help lists them."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the whole command line."""
    parser = _ArgumentParser(
        prog="ed-extractor",
        description="Keep a verified local copy of Spansh's Elite Dangerous galaxy dumps.",
    )
    parser.add_argument(
        "--version", action="version", version=f"ed-extractor {__version__} (backend: {BACKEND})"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    # Every parser a command adds is an _ArgumentParser: its usage errors are one line, exit 2.
    for module in COMMANDS.values():
        module.add_parser(cast("Subcommands", commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        configure_logging()
        return COMMANDS[args.command].run(args)
    except UsageError as exc:
        print(f"ed-extractor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdExtractorError as exc:
        print(f"ed-extractor: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        problem = _validation_problem(exc)
        if problem is None:
            raise
        print(f"ed-extractor: error: {problem}", file=sys.stderr)
        return EXIT_USAGE


def _validation_problem(exc: Exception) -> str | None:
    """Pydantic's first complaint, when ``exc`` is its ValidationError (a bad value: usage)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return None
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}"
