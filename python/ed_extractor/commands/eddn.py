"""``ed-extractor eddn``: record the EDDN relay into hourly gzip files until SIGTERM/--duration."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ed_extractor.commands.shared import (
    EXIT_OK,
    Subcommands,
    add_dest_option,
    positive_number,
    settings_with,
)
from ed_extractor.errors import UsageError

# What only running the command needs is imported in run(), so that the parser stays cheap.

NAME = "eddn"


def add_parser(commands: Subcommands) -> None:
    """Register ``eddn`` on the top-level subparsers."""
    eddn = commands.add_parser(NAME, help="record the EDDN relay into hourly gzip files")
    eddn.add_argument(
        "--endpoint",
        metavar="tcp://HOST:PORT",
        help="relay to subscribe to (default: tcp://eddn.edcd.io:9500)",
    )
    eddn.add_argument(
        "--schemas",
        nargs="+",
        metavar="NAME",
        help="schemas to keep, e.g. commodity-3 journal-1 (default: all)",
    )
    eddn.add_argument(
        "--duration",
        type=positive_number,
        metavar="SECONDS",
        help="stop after this long (default: run until SIGTERM)",
    )
    eddn.add_argument(
        "--silence-timeout",
        type=positive_number,
        metavar="SECONDS",
        help="reconnect after this long without a message (default 60)",
    )
    add_dest_option(eddn)
    eddn.add_argument("--json", action="store_true", help="print the counters as JSON on exit")


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (the handlers are restored after)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _replica_name() -> str:
    """ED_EXTRACTOR_EDDN_REPLICA, else the host name's first label (the pod's name)."""
    import os
    import re
    import socket

    name = os.environ.get("ED_EXTRACTOR_EDDN_REPLICA") or socket.gethostname().split(".")[0]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", name):
        raise UsageError(f"invalid replica name {name!r}: letters, digits, '-' and '_' only")
    return name


def run(args: argparse.Namespace) -> int:
    """Record until stopped; print the counters; exit 0 unless a file could not be written."""
    from ed_extractor.http import make_client
    from ed_extractor.metrics import PeriodicExport, RunMetrics
    from ed_extractor.pipeline.eddn_coverage import REPLICAS_FOLDER, CoverageLog
    from ed_extractor.pipeline.eddn_stream import EddnRecorder, run_stream
    from ed_extractor.pipeline.lock import destination_lock
    from ed_extractor.pipeline.session import destination_for, open_manifest, s3_access

    settings = settings_with(
        dest=args.dest, eddn_endpoint=args.endpoint, eddn_silence_timeout_s=args.silence_timeout
    )
    endpoint = settings.eddn_endpoint
    if not endpoint.startswith(("tcp://", "ipc://")):
        raise UsageError(f"invalid EDDN endpoint {endpoint!r}: expected tcp://HOST:PORT")
    # The replica's own folder: its coverage log and its lock.
    folder = settings.dest / REPLICAS_FOLDER / _replica_name()
    folder.mkdir(parents=True, exist_ok=True)
    s3 = s3_access(settings)
    # The lock of <dest>/eddn/_replicas/<replica>: one recorder per replica name and destination.
    with (
        destination_lock(folder, wait_s=settings.lock_wait_s),
        make_client(
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout
        ) as client,  # fmt: skip
        open_manifest(settings, client, s3=s3) as store,
        _stop_on_signals() as stop,
    ):
        recorder = EddnRecorder(
            settings.dest,
            store,
            endpoint,
            schemas=frozenset(args.schemas) if args.schemas else None,
            destination=destination_for(settings, client, s3),
        )
        metrics = RunMetrics.from_settings(settings)
        live = PeriodicExport(metrics, settings.eddn_metrics_interval_s)
        try:
            stats = run_stream(
                recorder,
                endpoint,
                silence_timeout_s=settings.eddn_silence_timeout_s,
                duration_s=args.duration,
                stop=stop,
                tick=lambda current: live(current.outcomes, current.stats.as_dict()),
                coverage=CoverageLog(folder, heartbeat_s=settings.eddn_heartbeat_s),
            )
        finally:
            metrics.outcomes = list(recorder.outcomes)
            metrics.export(store, eddn=recorder.stats.as_dict())
    counters = stats.as_dict()
    if args.json:
        print(json.dumps(counters), flush=True)
    else:
        print(", ".join(f"{name} {value}" for name, value in counters.items()), flush=True)
    return EXIT_OK
