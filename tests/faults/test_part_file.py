"""A kept part file that no longer fits: discarded once its response is closed, fetched anew."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import assert_stored, cli, explain, payload
from tests.faults.server import OK, Exchange, FaultServer, Plan, Version

Start = Callable[..., FaultServer]

SIZE = 512 * 1024
HALF = SIZE // 2
BODY = payload(SIZE, seed=5)
NAME = "dump.bin"


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
def test_a_part_file_truncated_behind_the_sidecars_back_is_discarded_and_restarted(
    native: str, fault_server: Start, dest: Path
) -> None:
    part = dest / f"{NAME}.part"
    server = fault_server(Version(BODY))

    def plans(n: int, exchange: Exchange) -> Plan:
        if n == 0:
            return Plan(cut_after=HALF)
        if n == 1:  # the client has asked for the tail after HALF bytes: shorten its part file
            os.truncate(part, HALF // 4)
        return OK

    server.plans = plans
    result = cli(
        "fetch", server.url(NAME), "--dest", str(dest), "--json",
        env={"ED_EXTRACTOR_NATIVE": native},
    )  # fmt: skip
    assert_stored(result, dest, NAME, BODY, server)
    gets = server.body_gets()
    assert gets[1].range == f"bytes={HALF}-", explain(result, server)
    assert gets[-1].range_start in (None, 0), explain(result, server)  # started over


def test_a_206_that_does_not_continue_the_part_is_closed_before_starting_over(
    fault_server: Start, dest: Path
) -> None:
    server = fault_server(Version(BODY))
    open_while_restarting: list[int] = []

    def plans(n: int, exchange: Exchange) -> Plan:
        if n == 0:
            return Plan(cut_after=HALF)
        if n == 1:
            return Plan(range_shift=100)  # a 206 that starts before the part file's end
        earlier = [e for e in server.body_gets() if e.index < exchange.index]
        open_while_restarting.append(sum(e.client_still_connected() for e in earlier))
        return OK

    server.plans = plans
    result = cli("fetch", server.url(NAME), "--dest", str(dest), "--json")
    assert_stored(result, dest, NAME, BODY, server)
    assert open_while_restarting, explain(result, server)
    # The answer that did not fit was closed before the next GET: one connection at a time.
    assert open_while_restarting == [0] * len(open_while_restarting), explain(result, server)
