"""``python -m ed_extractor.demo generate|serve``: build the demo mirror tree, or serve a folder."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ed_extractor.demo.generator import generate_mirror
from ed_extractor.demo.mirror import MirrorError, start_mirror


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ed_extractor.demo", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write (or reuse) the Spansh-like dump tree")
    generate.add_argument("--root", type=Path, required=True, help="folder of the mirror tree")
    generate.add_argument("--scale-mb", type=int, default=200, help="total gzip size (MB)")
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    generate.add_argument("--json", action="store_true", help="one JSON line per file on stdout")

    serve = commands.add_parser("serve", help="serve a folder over HTTP until SIGINT/SIGTERM")
    serve.add_argument("--root", type=Path, required=True, help="folder to serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--prefer", choices=("auto", "nginx", "python"), default="auto")
    return parser


def _generate(args: argparse.Namespace) -> int:
    if args.scale_mb < 1:
        print("error: --scale-mb must be at least 1", file=sys.stderr)
        return 2
    for stats in generate_mirror(
        args.root, scale_mb=args.scale_mb, seed=args.seed, workers=args.workers
    ):
        if args.json:
            line = {
                "name": stats.name,
                "path": str(stats.path),
                "bytes": stats.bytes,
                "uncompressed_bytes": stats.uncompressed_bytes,
                "records": stats.records,
                "sha256": stats.sha256,
            }
            print(json.dumps(line), flush=True)
    return 0


def _serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        mirror = start_mirror(args.root, host=args.host, port=args.port, prefer=args.prefer)
    except MirrorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with mirror:
        logging.getLogger(__name__).info("serving %s with %s", mirror.root, mirror.kind)
        print(mirror.base_url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "generate":
        return _generate(args)
    return _serve(args)


if __name__ == "__main__":  # the guard matters: generator worker processes re-import __main__
    raise SystemExit(main())
