"""The command line: probe, fetch, run and manifest (contract: docs/architecture.md; exit 0/1/2)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn, get_args

from pydantic import ValidationError

from ed_extractor import __version__
from ed_extractor.commands import verify as verify_command
from ed_extractor.errors import EdExtractorError, UsageError
from ed_extractor.hashing import BACKEND
from ed_extractor.http import make_client
from ed_extractor.logs import configure_logging
from ed_extractor.manifest import ManifestStore
from ed_extractor.manifest.models import ContentRegime, normalize_sha256
from ed_extractor.metrics import RunMetrics
from ed_extractor.paths import validate_url
from ed_extractor.pipeline.lock import destination_lock
from ed_extractor.pipeline.progress import progress_for_terminal
from ed_extractor.pipeline.spansh_dump import DumpFetcher, SourceOutcome
from ed_extractor.retry import RetryPolicy
from ed_extractor.services.source_probe.prober import SourceProber
from ed_extractor.settings import Settings, SourceSpec, load_sources

log = logging.getLogger("ed_extractor")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _connections(value: str) -> int:
    if value == "auto":
        return 1
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    if int(value) > 1:
        raise argparse.ArgumentTypeError("more than one connection per file is not supported yet")
    return 1


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
    fetch.add_argument("--connections", type=_connections, default=1, metavar="N|auto")
    fetch.add_argument(
        "--expect",
        choices=get_args(ContentRegime),
        help="what the content must be, whatever the URL's name implies (binary: anything)",
    )
    fetch.add_argument("--expect-sha256", type=_sha256_hex, metavar="HEX")
    fetch.add_argument("--no-verify", action="store_true", help="skip the content checks")
    fetch.add_argument("--json", action="store_true", help="one JSON object per source")

    run = commands.add_parser("run", help="fetch every enabled source of the configuration")
    run.add_argument("--config", type=Path, help="sources TOML (default: built-in Spansh list)")
    run.add_argument("--dest", type=Path, help="destination folder")
    run.add_argument("--only", nargs="+", metavar="NAME", help="fetch only these sources")
    run.add_argument("--json", action="store_true", help="one JSON object per source")

    manifest = commands.add_parser("manifest", help="list the files recorded in the manifest")
    _add_destination_options(manifest)
    manifest.add_argument("--json", action="store_true", help="one JSON object per source")
    verify_command.add_parser(commands)
    return parser


def _add_destination_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", type=Path, help="destination folder (default: $ED_EXTRACTOR_DEST or ./data)"
    )
    parser.add_argument(
        "--manifest", type=Path, help="manifest file (default: <dest>/manifest.sqlite3)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "dest", None) is not None:
        overrides["dest"] = args.dest
    if getattr(args, "manifest", None) is not None:
        overrides["manifest"] = args.manifest
    if getattr(args, "config", None) is not None:
        overrides["config"] = args.config
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


def _fetch_sources(settings: Settings, specs: Sequence[SourceSpec], as_json: bool) -> int:
    deadline = None if settings.deadline_s is None else time.monotonic() + settings.deadline_s
    dest = settings.dest
    dest.mkdir(parents=True, exist_ok=True)
    with (
        destination_lock(dest, wait_s=settings.lock_wait_s),
        ManifestStore(settings.manifest_path) as store,
        make_client(
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_redirects=settings.max_redirects,
        ) as client,
    ):
        fetcher = DumpFetcher(
            client,
            store,
            dest,
            progress=progress_for_terminal,
            verify=settings.verify,
            blake3=settings.blake3,
            retry=RetryPolicy(
                attempts=settings.retry_attempts,
                initial_wait_s=settings.retry_initial_wait_s,
                max_wait_s=settings.retry_max_wait_s,
                total_s=settings.retry_total_s,
                deadline=deadline,
            ),
        )
        metrics = RunMetrics.from_settings(settings)  # keeps the outcomes as they are printed
        code = _print_outcomes(metrics.observe(fetcher.fetch_all(specs)), as_json)
        metrics.export(store)
        return code


def _cmd_probe(args: argparse.Namespace) -> int:
    url = validate_url(args.url)
    with make_client() as client:
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
    settings = _settings(args)
    if args.no_verify:
        settings = settings.model_copy(update={"verify": False})
    specs = [
        SourceSpec(url=url, name=args.name, expect=args.expect, expect_sha256=args.expect_sha256)
        for url in args.urls
    ]
    return _fetch_sources(settings, specs, args.json)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    specs = load_sources(settings.config)
    if args.only:
        known = {spec.name for spec in specs}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise UsageError(f"--only names unknown sources: {', '.join(unknown)}")
        specs = [spec for spec in specs if spec.name in args.only]
    else:
        specs = [spec for spec in specs if spec.enabled]
    return _fetch_sources(settings, specs, args.json)


def _cmd_manifest(args: argparse.Namespace) -> int:
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
_COMMANDS |= {"verify": verify_command.run}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        configure_logging()
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"ed-extractor: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"ed-extractor: error: {where}: {first['msg']}", file=sys.stderr)
        return EXIT_USAGE
    except EdExtractorError as exc:
        print(f"ed-extractor: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
