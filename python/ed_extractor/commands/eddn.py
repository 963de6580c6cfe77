"""``ed-extractor eddn``: record the EDDN relay into hourly files; ``eddn merge`` merges them."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from ed_extractor.commands.eddn_gaps import add_gaps_parser, run_gaps
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
    eddn.add_argument(
        "--replica",
        metavar="NAME",
        help="this recorder's name: its files go to <dest>/eddn/_replicas/NAME "
        "(default: $ED_EXTRACTOR_EDDN_REPLICA, else the host name)",
    )
    add_dest_option(eddn)
    eddn.add_argument("--json", action="store_true", help="print the counters as JSON on exit")
    eddn.set_defaults(eddn_action=None)
    actions = eddn.add_subparsers(
        dest="eddn_action", required=False, metavar="{merge,gaps}", parser_class=type(eddn)
    )
    _add_merge_parser(actions)
    add_gaps_parser(actions)


def _add_merge_parser(actions: Any) -> None:
    """``eddn merge [--dest DEST] [--json]``."""
    merge = actions.add_parser(
        "merge", help="merge the replicas' closed hour files into one file per schema and hour"
    )
    add_dest_option(merge)
    merge.add_argument("--json", action="store_true", help="one JSON line per schema-hour")


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


@contextmanager
def _replica_lock(folder: Path, replica: str) -> Iterator[Path]:
    """Hold ``folder``'s lock; a recorder of that replica already running is a UsageError."""
    from ed_extractor.errors import LockError
    from ed_extractor.pipeline.lock import destination_lock

    with ExitStack() as stack:
        try:
            path = stack.enter_context(destination_lock(folder, wait_s=0))
        except LockError:
            raise UsageError(
                f"replica {replica!r} is already recording into {folder.parent.parent.parent} "
                f"(lock {folder}); give this recorder another --replica"
            ) from None
        yield path


def run(args: argparse.Namespace) -> int:
    """``eddn``: record (no action), or run the action named (``merge``, ``gaps``)."""
    if args.eddn_action == "merge":
        return run_merge(args)
    if args.eddn_action == "gaps":
        return run_gaps(args)
    return run_recorder(args)


def run_merge(args: argparse.Namespace) -> int:
    """Merge every hour whose replica files are all closed; print one line per schema-hour."""
    from ed_extractor.pipeline.eddn_merge import MergeResult, merge_closed_hours
    from ed_extractor.pipeline.session import open_manifest

    settings = settings_with(dest=args.dest)
    if settings.object_dest is not None:
        raise UsageError("eddn merge works on a local folder, not an object-store destination")
    dest = settings.dest.resolve()

    def report(result: MergeResult) -> None:
        fields = result.as_dict()
        line = json.dumps(fields) if args.json else " ".join(f"{k}={v}" for k, v in fields.items())
        print(line, flush=True)

    with _no_client() as client, open_manifest(settings, client) as store:
        merge_closed_hours(dest, store, settings.eddn_endpoint, report=report)
    return EXIT_OK


@contextmanager
def _no_client() -> Iterator[Any]:
    """The HTTP client open_manifest takes (a local folder's manifest does not use it)."""
    from ed_extractor.http import make_client

    with make_client() as client:
        yield client


def run_recorder(args: argparse.Namespace) -> int:
    """Record until stopped; print the counters; exit 0 unless a file could not be written."""
    from ed_extractor.http import make_client
    from ed_extractor.metrics import PeriodicExport, RunMetrics
    from ed_extractor.pipeline.eddn_coverage import CoverageLog
    from ed_extractor.pipeline.eddn_stream import (
        EddnRecorder,
        checked_replica,
        default_replica,
        run_stream,
    )
    from ed_extractor.pipeline.session import destination_for, open_manifest, s3_access

    settings = settings_with(
        dest=args.dest,
        eddn_endpoint=args.endpoint,
        eddn_silence_timeout_s=args.silence_timeout,
        eddn_replica=args.replica,
    )
    chosen = settings.eddn_replica if args.replica is None else args.replica  # even ""
    replica = checked_replica(default_replica() if chosen is None else chosen)
    endpoint = settings.eddn_endpoint
    if not endpoint.startswith(("tcp://", "ipc://")):
        raise UsageError(f"invalid EDDN endpoint {endpoint!r}: expected tcp://HOST:PORT")
    folder = settings.dest / "eddn" / "_replicas" / replica
    folder.mkdir(parents=True, exist_ok=True)
    s3 = s3_access(settings)
    # The lock of this replica's folder: one recorder per replica name; other replicas, merges and
    # dump runs keep going.
    with (
        _replica_lock(folder, replica),
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
            replica=replica,
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
