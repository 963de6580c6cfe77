"""Fixtures of the fault suite: misbehaving servers, the CLI as a subprocess, and what it left."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest

from ed_extractor.manifest import ManifestRecord, ManifestStore
from tests.faults.server import FaultServer

#: Small retry waits and timeouts so that every scenario takes seconds, not minutes.
FAST_ENV = {
    "ED_EXTRACTOR_RETRY_ATTEMPTS": "4",
    "ED_EXTRACTOR_RETRY_INITIAL_WAIT_S": "0.05",
    "ED_EXTRACTOR_RETRY_MAX_WAIT_S": "5",
    "ED_EXTRACTOR_RETRY_TOTAL_S": "30",
    "ED_EXTRACTOR_CONNECT_TIMEOUT": "2",
    "ED_EXTRACTOR_READ_TIMEOUT": "1",
    "ED_EXTRACTOR_DEADLINE_S": "60",
    "ED_EXTRACTOR_LOCK_WAIT_S": "0",
    "ED_EXTRACTOR_LOG_FORMAT": "json",
}
MANIFEST = "manifest.sqlite3"
#: What the program may leave in dest besides final files and resumable parts.
BOOKKEEPING = {MANIFEST, f"{MANIFEST}-wal", f"{MANIFEST}-shm", ".ed-extractor.lock"}


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ED_EXTRACTOR_")}
    return {**base, **FAST_ENV, **(extra or {})}


def command(*args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "ed_extractor", *args]


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``ed-extractor ARGS`` in a fresh interpreter; a hang fails the test after ``timeout``."""
    return subprocess.run(
        command(*args, prefix=prefix),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(env),
        check=False,
    )


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(env),
    )


def outcome_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The single JSON line of a one-source ``--json`` run (stdout must hold nothing else)."""
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 1, f"expected one JSON line\n{explain(result)}"
    outcome: dict[str, Any] = lines[0]
    return outcome


def explain(result: subprocess.CompletedProcess[str], server: FaultServer | None = None) -> str:
    seen = "" if server is None else "\nserver saw: " + "\n  ".join(map(repr, server.seen()))
    return f"exit {result.returncode}\nstdout={result.stdout}\nstderr={result.stderr[-3000:]}{seen}"


_PAYLOAD_BLOCK = 64 << 20  # randbytes cannot make 256 MiB in one call (its bit count overflows)


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes (sniffed as application/octet-stream)."""
    rng = random.Random(seed)
    if size <= _PAYLOAD_BLOCK:
        return rng.randbytes(size)
    starts = range(0, size, _PAYLOAD_BLOCK)
    return b"".join(rng.randbytes(min(_PAYLOAD_BLOCK, size - start)) for start in starts)


def gzip_dump(records: int, seed: int = 1) -> tuple[bytes, int]:
    """A valid gzip of a Spansh-like JSON array (one object per line) and its record count."""
    rng = random.Random(seed)
    lines = [
        json.dumps({"id64": rng.getrandbits(56), "name": rng.randbytes(24).hex()})
        for _ in range(records)
    ]
    text = "[\n" + ",\n".join(lines) + "\n]\n"
    return gzip.compress(text.encode(), compresslevel=1, mtime=0), records


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_of(dest: Path, name: str) -> ManifestRecord | None:
    path = dest / MANIFEST
    if not path.exists():
        return None
    with ManifestStore(path) as store:
        return store.get(name)


def leftovers(dest: Path) -> set[str]:
    """Names in dest other than the manifest and lock files."""
    if not dest.exists():
        return set()
    return {p.name for p in dest.iterdir()} - BOOKKEEPING


def assert_stored(
    result: subprocess.CompletedProcess[str],
    dest: Path,
    name: str,
    body: bytes,
    server: FaultServer | None = None,
) -> dict[str, Any]:
    """Exit 0, one ``downloaded`` line; the file and the manifest's digests are the body's."""
    why = explain(result, server)
    assert result.returncode == 0, why
    outcome = outcome_of(result)
    assert outcome["status"] == "downloaded", why
    assert outcome["error"] is None
    stored = dest / name
    assert stored.is_file(), why
    data = stored.read_bytes()
    assert len(data) == len(body), why
    assert sha256(data) == sha256(body), f"stored bytes differ from the server's\n{why}"
    assert outcome["sha256"] == sha256(body)
    assert outcome["blake3"] == blake3.blake3(body).hexdigest()  # a resumed prefix included
    assert outcome["bytes"] == len(body)
    record = record_of(dest, name)
    assert record is not None, why
    assert record.sha256 == sha256(body)
    assert record.blake3 == outcome["blake3"]
    assert record.bytes == len(body)
    assert leftovers(dest) == {name}, f"stray files: {leftovers(dest)}\n{why}"
    return outcome


def assert_failed(
    result: subprocess.CompletedProcess[str],
    dest: Path,
    name: str,
    server: FaultServer | None = None,
    *,
    part_allowed: bool = False,
) -> str:
    """Exit 1, one ``failed`` line, no file under the final name, no manifest record."""
    why = explain(result, server)
    assert result.returncode == 1, why
    outcome = outcome_of(result)
    assert outcome["status"] == "failed", why
    assert outcome["error"], why
    assert not (dest / name).exists(), why
    assert record_of(dest, name) is None, why
    if not part_allowed:
        assert leftovers(dest) == set(), f"stray files: {leftovers(dest)}\n{why}"
    return str(outcome["error"])


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


@pytest.fixture
def fault_server() -> Iterator[Callable[..., FaultServer]]:
    """Start FaultServers (same arguments as FaultServer); all are stopped after the test."""
    started: list[FaultServer] = []

    def start(*args: Any, **kwargs: Any) -> FaultServer:
        server = FaultServer(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
