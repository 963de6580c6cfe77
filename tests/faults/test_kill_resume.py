"""A run killed with SIGKILL mid-download: the next run fetches only the missing tail."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.faults.conftest import assert_stored, cli, explain, payload, start_cli
from tests.faults.server import FaultServer, Plan, Version

SIZE = 4 << 20
BODY = payload(SIZE, seed=11)
NAME = "galaxy.bin"
KILL_AFTER = 1 << 20  # bytes on disk before the kill


def _values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _values(value)]
    if isinstance(node, list):
        return [v for value in node for v in _values(value)]
    return [node]


def test_a_run_killed_mid_download_resumes_with_only_the_missing_tail(
    fault_server: Any, dest: Path
) -> None:
    # The first body is throttled (64 KiB every 40 ms, ~2.6 s) so that the kill lands mid-way.
    server: FaultServer = fault_server(Version(BODY), [Plan(throttle=(64 * 1024, 0.04))])
    part = dest / f"{NAME}.part"
    sidecar = dest / f"{NAME}.part.resume"
    run = start_cli("fetch", server.url(NAME), "--dest", str(dest), "--json")
    try:
        reached = server.wait_for(
            lambda: part.exists() and part.stat().st_size >= KILL_AFTER, timeout=40
        )
        run.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=30)
    finally:
        run.kill()
    killed = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    assert reached, f"the .part never reached {KILL_AFTER} bytes\n{explain(killed, server)}"
    assert run.returncode == -signal.SIGKILL
    assert not (dest / NAME).exists()

    on_disk = part.stat().st_size
    assert KILL_AFTER <= on_disk < SIZE
    assert part.read_bytes() == BODY[:on_disk]  # what is kept is a true prefix
    assert sidecar.is_file(), f"no resume sidecar next to the .part: {sorted(dest.iterdir())}"
    state = _values(json.loads(sidecar.read_text()))
    assert '"v1"' in state, state  # the validator
    assert SIZE in state or str(SIZE) in state, state  # the total length

    mark = len(server.seen())
    result = cli("fetch", server.url(NAME), "--dest", str(dest), "--json")
    assert_stored(result, dest, NAME, BODY, server)
    [body_get] = server.body_gets(since=mark)
    assert body_get.range == f"bytes={on_disk}-", explain(result, server)
    assert body_get.if_range == '"v1"'
    assert body_get.status == 206
    # Measured server-side: the second run re-sent only the tail (the probe's 1 KiB aside).
    assert body_get.sent == SIZE - on_disk
    assert server.body_bytes(since=mark) == SIZE - on_disk
