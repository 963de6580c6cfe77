"""The command line: probe, fetch, run, manifest, verify, api, eddn (docs/architecture.md)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, get_args

from ed_extractor import __version__
from ed_extractor.commands import api as api_command
from ed_extractor.commands import eddn as eddn_command
from ed_extractor.commands import positive_int
from ed_extractor.commands import verify as verify_command
from ed_extractor.errors import EdExtractorError, UsageError
from ed_extractor.hashing import BACKEND
from ed_extractor.logs import configure_logging
from ed_extractor.vocabulary import ContentRegime, normalize_sha256

# What only some commands use (the HTTP client, the manifest, settings, metrics, the progress bar,
# the content checks) is imported by those commands, so that --version, probe and manifest start
# quickly.
if TYPE_CHECKING:
    from ed_extractor.pipeline.spansh_dump import SourceOutcome
    from ed_extractor.settings import ConnectionsSetting, Settings, SourceSpec

log = logging.getLogger("ed_extractor")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _connections(value: str) -> ConnectionsSetting:
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return int(value)


def _add_parallel_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallel",
        type=positive_int,
        metavar="K",
        help="sources worked on at once (default: $ED_EXTRACTOR_PARALLEL, [defaults], else 2)",
    )


def _sha256_hex(value: str) -> str:
    try:
        return normalize_sha256(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a SHA-256 hex digest: {value!r}") from None


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

    probe = commands.add_parser("probe", help="show what a URL serves, without downloading it")
    probe.add_argument("url")
    probe.add_argument("--json", action="store_true", help="print one JSON object")

    fetch = commands.add_parser("fetch", help="download URLs into the destination")
    fetch.add_argument("urls", nargs="+", metavar="URL")
    _add_destination_options(fetch)
    fetch.add_argument("--name", help="file name to store a single URL under")
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
    fetch.add_argument("--expect-sha256", type=_sha256_hex, metavar="HEX")
    fetch.add_argument("--no-verify", action="store_true", help="skip the content checks")
    _add_parallel_option(fetch)
    fetch.add_argument("--json", action="store_true", help="one JSON object per source")

    run = commands.add_parser("run", help="fetch every enabled source of the configuration")
    run.add_argument("--config", type=Path, help="sources TOML (default: built-in Spansh list)")
    run.add_argument("--dest", type=Path, help="destination folder")
    run.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these sources")
    _add_parallel_option(run)
    run.add_argument("--json", action="store_true", help="one JSON object per source")

    manifest = commands.add_parser("manifest", help="list the files recorded in the manifest")
    _add_destination_options(manifest)
    manifest.add_argument("--json", action="store_true", help="one JSON object per source")
    verify_command.add_parser(commands)
    api_command.add_parser(commands)
    eddn_command.add_parser(commands)
    return parser


def _add_destination_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", type=Path, help="destination folder (default: $ED_EXTRACTOR_DEST or ./data)"
    )
    parser.add_argument(
        "--manifest", type=Path, help="manifest file (default: <dest>/manifest.sqlite3)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    from ed_extractor.settings import Settings

    overrides: dict[str, object] = {}
    if getattr(args, "dest", None) is not None:
        overrides["dest"] = args.dest
    if getattr(args, "manifest", None) is not None:
        overrides["manifest"] = args.manifest
    if getattr(args, "config", None) is not None:
        overrides["config"] = args.config
    if getattr(args, "parallel", None) is not None:
        overrides["parallel"] = args.parallel
    settings = Settings.from_environment(**overrides)
    configure_logging(settings.log_format)
    return settings


def _print_outcomes(outcomes: Iterable[SourceOutcome], as_json: bool) -> int:
    failed = False
    for outcome in outcomes:
        failed = failed or outcome.status == "failed"
        if as_json:
            print(outcome.model_dump_json(), flush=True)
        else:
            detail = outcome.error if outcome.status == "failed" else outcome.path
            print(f"{outcome.status:<10} {outcome.name}  {detail}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def _fetch_sources(
    settings: Settings, specs: Sequence[SourceSpec], as_json: bool, *, parallel: int
) -> int:
    from ed_extractor.metrics import RunMetrics
    from ed_extractor.pipeline.progress import progress_for_terminal
    from ed_extractor.pipeline.session import destination_session
    from ed_extractor.pipeline.spansh_dump import DumpFetcher
    from ed_extractor.retry import RetryPolicy
    from ed_extractor.services.s3.access import S3Access, S3Config

    deadline = None if settings.deadline_s is None else time.monotonic() + settings.deadline_s
    with destination_session(settings) as (store, client):
        fetcher = DumpFetcher(
            client,
            store,
            settings.dest,
            progress=progress_for_terminal(),
            verify=settings.verify,
            s3=S3Access(S3Config.from_settings(settings)),
            connections=settings.connections,
            blake3=settings.blake3,
            retry=RetryPolicy.from_settings(settings, deadline),
        )
        metrics = RunMetrics.from_settings(settings)  # keeps the outcomes as they are printed
        outcomes = fetcher.fetch_all(specs, parallel=parallel)
        code = _print_outcomes(metrics.observe(outcomes), as_json)
        metrics.export(store)
        return code


def _cmd_probe(args: argparse.Namespace) -> int:
    from ed_extractor.http import make_client
    from ed_extractor.paths import validate_url
    from ed_extractor.services.source_probe.prober import SourceProber

    url = validate_url(args.url)
    settings = _settings(args)
    with make_client(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_redirects=settings.max_redirects,
    ) as client:
        result = SourceProber(client).probe(url)
    if args.json:
        print(result.model_dump_json())
    else:
        for key, value in result.model_dump().items():
            print(f"{key:<20} {value}")
    return EXIT_OK


def _cmd_fetch(args: argparse.Namespace) -> int:
    if args.name is not None and len(args.urls) != 1:
        raise UsageError("--name takes exactly one URL")
    from ed_extractor.settings import SourceSpec

    settings = _settings(args)
    if args.no_verify:
        settings = settings.model_copy(update={"verify": False})
    if args.connections is not None:
        settings = settings.model_copy(update={"connections": args.connections})
    specs = [
        SourceSpec(url=url, name=args.name, expect=args.expect, expect_sha256=args.expect_sha256)
        for url in args.urls
    ]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # they would share one part file and one manifest row
        raise UsageError(f"several URLs would be stored as {twice[0]!r}; fetch them one by one")
    return _fetch_sources(settings, specs, args.json, parallel=settings.sources_at_once())


def _cmd_run(args: argparse.Namespace) -> int:
    from ed_extractor.settings import load_sources_file

    settings = _settings(args)
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
    return _fetch_sources(settings, specs, args.json, parallel=settings.sources_at_once(sources))


def _cmd_manifest(args: argparse.Namespace) -> int:
    from ed_extractor.manifest import ManifestStore

    settings = _settings(args)
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


_COMMANDS = {"probe": _cmd_probe, "fetch": _cmd_fetch, "run": _cmd_run, "manifest": _cmd_manifest}
_COMMANDS |= {"verify": verify_command.run, "api": api_command.run, "eddn": eddn_command.run}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        configure_logging()
        return _COMMANDS[args.command](args)
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
