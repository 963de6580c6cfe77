"""Serve a real SeaweedFS S3 endpoint on 127.0.0.1 with one bucket until stopped (CI's containers).

Usage: ``s3-serve.py --root DIR --bucket NAME``. Starts ``weed mini`` as the S3 tests do
(tests/seaweedfs.py: the test identity's credentials, data under DIR), creates the bucket, prints
the endpoint URL on stdout and waits; SIGTERM or SIGINT stops the server and removes its data.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.seaweedfs import seaweedfs


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds through seaweedfs(), which stops weed and removes its data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder for the server's data")
    parser.add_argument("--bucket", required=True, help="the bucket to create")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    args.root.mkdir(parents=True, exist_ok=True)
    with seaweedfs(args.root) as server:
        server.client().create_bucket(Bucket=args.bucket)
        print(server.endpoint, flush=True)
        while True:
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
