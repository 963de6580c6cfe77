"""``ed-extractor api dump ID64 ...``: Spansh system dumps through the rate-limited API fetcher."""

from __future__ import annotations

import argparse

from ed_extractor.commands.shared import (
    Subcommands,
    add_dest_option,
    positive_int,
    positive_number,
    print_outcomes,
    settings_with,
)

# What only running the command needs is imported in run(), so that the parser stays cheap.

NAME = "api"


def _id64(text: str) -> int:
    from ed_extractor.pipeline.api_dump import parse_id64

    try:
        return parse_id64(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Subcommands) -> None:
    """Register ``api`` and its ``dump`` subcommand on the top-level subparsers."""
    api = commands.add_parser(NAME, help="fetch from the Spansh API, rate-limited")
    actions = api.add_subparsers(dest="api_command", required=True, metavar="dump")
    dump = actions.add_parser("dump", help="store systems' dumps as <dest>/api/dump/<id64>.json")
    dump.add_argument("ids", nargs="+", type=_id64, metavar="ID64", help="systems' id64 numbers")
    dump.add_argument("--base-url", metavar="URL", help="API root (default: Spansh)")
    dump.add_argument("--rate", type=positive_number, metavar="PER_SECOND",
                      help="most requests to a host in any 1 s (default 2)")  # fmt: skip
    dump.add_argument("--burst", type=positive_int, metavar="N",
                      help="of those, requests allowed back to back (default 4)")  # fmt: skip
    add_dest_option(dump)
    dump.add_argument("--json", action="store_true", help="one JSON object per id")


def run(args: argparse.Namespace) -> int:
    """Fetch every id; exit 1 when at least one failed."""
    from ed_extractor.metrics import RunMetrics
    from ed_extractor.paths import validate_url
    from ed_extractor.pipeline.api_dump import SystemDumpFetcher
    from ed_extractor.pipeline.session import destination_session
    from ed_extractor.retry import RetryPolicy
    from ed_extractor.services.api_client import (
        ApiFetcher,
        HostRateLimiter,
        PollSchedule,
        parse_auth_header,
    )

    settings = settings_with(
        dest=args.dest, api_base_url=args.base_url, api_rate=args.rate, api_burst=args.burst
    )
    base_url = validate_url(settings.api_base_url)
    secret = settings.api_auth_header
    auth = parse_auth_header(secret.get_secret_value()) if secret is not None else None
    with destination_session(settings) as session:
        store, client = session.store, session.client
        api = ApiFetcher(
            client,
            base_url=base_url,
            limiter=HostRateLimiter(settings.api_rate, settings.api_burst),
            max_bytes=settings.api_max_bytes,
            retry=RetryPolicy.from_settings(settings),
            auth_header=auth,
            poll=PollSchedule(total_s=settings.api_poll_total_s),
        )
        metrics = RunMetrics.from_settings(settings)
        fetcher = SystemDumpFetcher(api, store, settings.dest, blake3=settings.blake3,
                                    destination=session.destination)  # fmt: skip
        code = print_outcomes(metrics.observe(fetcher.fetch_all(args.ids)), args.json)
        metrics.export(store)
        return code
