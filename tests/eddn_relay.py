"""A local EDDN relay for tests: a real ZeroMQ XPUB socket on 127.0.0.1 and EDDN-shaped messages."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import zmq

SCHEMAS = "https://eddn.edcd.io/schemas"


def header(n: int) -> dict[str, str]:
    return {
        "uploaderID": f"{n:040x}",
        "softwareName": "E:D Market Connector [Windows]",
        "softwareVersion": "5.12.1",
        "gameversion": "4.0.0.1904",
        "gamebuild": "r308767/r0 ",
        "gatewayTimestamp": f"2026-12-03T07:{n % 60:02d}:00.123456Z",
    }


def commodity(n: int) -> dict[str, Any]:
    """A message shaped like EDDN's commodity/3."""
    return {
        "$schemaRef": f"{SCHEMAS}/commodity/3",
        "header": header(n),
        "message": {
            "systemName": "Shinrarta Dezhra",
            "stationName": "Jameson Memorial",
            "marketId": 128666762,
            "timestamp": "2026-12-03T07:00:00Z",
            "commodities": [
                {"name": "gold", "meanPrice": 47610 + n, "buyPrice": 0, "stock": 0,
                 "stockBracket": 0, "sellPrice": 48010, "demand": 1024, "demandBracket": 2},
            ],
        },
    }  # fmt: skip


def journal(n: int) -> dict[str, Any]:
    """A message shaped like EDDN's journal/1 (an FSDJump)."""
    return {
        "$schemaRef": f"{SCHEMAS}/journal/1",
        "header": header(n),
        "message": {
            "event": "FSDJump",
            "timestamp": "2026-12-03T07:00:00Z",
            "StarSystem": f"Col 285 Sector AB-C d{n}",
            "SystemAddress": 10477373803 + n,
            "StarPos": [1.0, 2.0, float(n)],
            "horizons": True,
            "odyssey": True,
            "Powers": ["Zachary Hudson"],
            "Ünïcode": "Ξ",
        },
    }


def sandbox_message(n: int) -> dict[str, Any]:
    """A commodity message of the /test schema (which is never recorded)."""
    message = commodity(n)
    message["$schemaRef"] += "/test"
    return message


def pack(document: Any) -> bytes:
    return zlib.compress(json.dumps(document).encode())


class Relay:
    """An XPUB socket bound to 127.0.0.1 (it sees subscriptions, so a test knows who listens)."""

    def __init__(self, port: int | None = None) -> None:
        self._context = zmq.Context()
        self._socket = self._bind(port)
        self.port = int(self._socket.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def _bind(self, port: int | None) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.XPUB)
        socket.setsockopt(zmq.LINGER, 1000)
        socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        socket.bind(f"tcp://127.0.0.1:{port or '*'}")
        return socket

    def wait_for_subscriber(self, timeout_s: float = 10.0) -> None:
        """Block until a SUB socket subscribes (a subscription frame; other frames are skipped)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if (
                self._socket.poll(int(left * 1000) + 1, zmq.POLLIN)
                and self._socket.recv()[:1] == b"\x01"
            ):
                return
        raise TimeoutError("no subscriber")

    def send(self, document: Any) -> None:
        self.send_raw(pack(document))

    def send_raw(self, payload: bytes) -> None:
        self._socket.send(payload)

    def restart(self) -> None:
        """Close the socket and bind a new one on the same port, as a restarted relay does."""
        self._socket.close(linger=0)
        deadline = time.monotonic() + 5
        while True:
            try:
                self._socket = self._bind(self.port)
                return
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self._socket.close(linger=1000)
        self._context.term()
