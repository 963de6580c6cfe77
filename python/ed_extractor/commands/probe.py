"""``ed-extractor probe URL``: what a URL serves (size, validators, type), without downloading."""

from __future__ import annotations

import argparse

from ed_extractor.commands.shared import EXIT_OK, Subcommands, settings_with

NAME = "probe"


def add_parser(commands: Subcommands) -> None:
    """Register ``probe`` on the top-level subparsers."""
    probe = commands.add_parser(NAME, help="show what a URL serves, without downloading it")
    probe.add_argument("url", help="an http(s):// or s3:// URL")
    probe.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Probe the URL and print what it serves."""
    from ed_extractor.http import make_client
    from ed_extractor.paths import validate_url
    from ed_extractor.pipeline.session import s3_access
    from ed_extractor.services.source_probe.prober import SourceProber
    from ed_extractor.services.sources import Sources

    url = validate_url(args.url)
    settings = settings_with()
    with make_client(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_redirects=settings.max_redirects,
    ) as client:
        sources = Sources(s3=s3_access(settings))
        result = SourceProber(client, sources=sources).probe(url)
    if args.json:
        print(result.model_dump_json())
    else:
        for key, value in result.model_dump().items():
            print(f"{key:<20} {value}")
    return EXIT_OK
