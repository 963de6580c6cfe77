"""The file system refuses (disk full, permission denied): clear error, old file and record kept."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ed_extractor.manifest import ManifestStore
from tests.faults.conftest import assert_stored, cli, explain, outcome_of, payload, record_of
from tests.faults.server import FaultServer, Plan, Version, http_date

NAME = "stations.bin"
OLD = Version(payload(64 * 1024, seed=21), etag='"v1"', last_modified=http_date(1_700_000_000))
NEW = Version(payload(4 << 20, seed=22), etag='"v2"', last_modified=http_date(1_700_086_400))
PACE = (16 * 1024, 0.02)  # about 800 kB/s: what the server sends before the client gives up shows


def _skip(reason: str) -> NoReturn:
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def _mounted(mount: Path, kind: str, *options: str) -> Iterator[Path]:
    """A fresh file system of ``kind`` at ``mount``, unmounted after.

    Mounting needs root (CAP_SYS_ADMIN); the test is skipped with the reason where not permitted.
    """
    mount.mkdir()
    if shutil.which("mount") is None:
        _skip("no mount(8) on this machine")
    done = subprocess.run(
        ["mount", "-t", kind, *options, kind, str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _skip(f"cannot mount a {kind} here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs."""
    yield from _mounted(tmp_path / "disk", "tmpfs", "-o", "size=2m")


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A ramfs: a file system without fallocate(2)."""
    yield from _mounted(tmp_path / "ramfs", "ramfs")


def _parts(dest: Path) -> list[Path]:
    return [p for p in dest.iterdir() if ".part" in p.name]


def test_disk_full_keeps_the_previous_file_and_its_record(
    fault_server: Any, small_disk: Path
) -> None:
    dest = small_disk / "dest"
    server: FaultServer = fault_server(OLD)
    url = server.url(NAME)
    assert_stored(cli("fetch", url, "--dest", str(dest), "--json"), dest, NAME, OLD.body, server)
    before = record_of(dest, NAME)

    server.set_version(NEW)  # 4 MiB on a 2 MiB disk
    result = cli("fetch", url, "--dest", str(dest), "--json")
    why = explain(result, server)
    assert result.returncode == 1, why
    said = result.stdout + result.stderr
    assert "No space left on device" in said, why
    assert str(dest) in said, why  # the error names the path
    assert outcome_of(result)["status"] == "failed", why
    assert (dest / NAME).read_bytes() == OLD.body
    assert _parts(dest) == [], why  # the run does not leave the disk full with its own part file
    assert record_of(dest, NAME) == before


@pytest.mark.parametrize("connections", ["1", "4"])
def test_a_download_larger_than_the_free_space_fails_before_its_body(
    connections: str, fault_server: Any, small_disk: Path
) -> None:
    dest = small_disk / "dest"
    server: FaultServer = fault_server(OLD, lambda n, exchange: Plan(throttle=PACE))
    args = ("fetch", server.url(NAME), "--dest", str(dest), "--json", "--connections", connections)
    assert_stored(cli(*args), dest, NAME, OLD.body, server)
    before = record_of(dest, NAME)

    server.set_version(NEW)  # 4 MiB on a 2 MiB disk
    mark = len(server.seen())
    result = cli(*args)
    why = explain(result, server)
    assert result.returncode == 1, why
    error = outcome_of(result)["error"]
    assert f"not enough space for {NAME}: needs {len(NEW.body)} bytes" in error, why
    if connections == "4":  # the part file is reserved before any range is asked for
        assert server.body_gets(mark) == [], why
    assert server.body_bytes(mark) < len(NEW.body) // 8, why  # not the disk's worth of body
    assert (dest / NAME).read_bytes() == OLD.body
    assert _parts(dest) == [], why
    assert record_of(dest, NAME) == before


def test_a_file_system_without_fallocate_keeps_sparse_part_files_and_says_so_once(
    fault_server: Any, ramfs: Path
) -> None:
    dest = ramfs / "dest"
    server: FaultServer = fault_server(NEW)
    args = ("fetch", server.url("a.bin"), server.url("b.bin"), "--dest", str(dest), "--json")
    result = cli(*args, "--connections", "4")
    why = explain(result, server)
    assert result.returncode == 0, why
    for name in ("a.bin", "b.bin"):
        assert (dest / name).read_bytes() == NEW.body, why
    assert result.stderr.count("cannot reserve space ahead") == 1, why


def _without_dac_override() -> tuple[str, ...]:
    """A command prefix under which root obeys file modes; () when not root."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        _skip("running as root and setpriv(1) is missing: root ignores the directory's mode")
    drop = "-dac_override,-dac_read_search,-fowner"
    probe = subprocess.run([setpriv, f"--bounding-set={drop}", "true"], check=False)
    if probe.returncode != 0:
        _skip("running as root and setpriv cannot drop CAP_DAC_OVERRIDE here")
    return (setpriv, f"--bounding-set={drop}")


def test_permission_denied_keeps_the_previous_file_and_its_record(
    fault_server: Any, tmp_path: Path
) -> None:
    prefix = _without_dac_override()
    dest = tmp_path / "dest"
    manifest = tmp_path / "manifest.sqlite3"  # outside dest: only the data folder is read-only
    server: FaultServer = fault_server(OLD)
    url = server.url(NAME)
    args = ("fetch", url, "--dest", str(dest), "--manifest", str(manifest), "--json")
    first = cli(*args)
    assert first.returncode == 0, explain(first, server)
    with ManifestStore(manifest) as store:
        before = store.get(NAME)
    assert before is not None

    server.set_version(NEW)
    dest.chmod(0o555)
    try:
        result = cli(*args, prefix=prefix)
    finally:
        dest.chmod(0o755)
    why = explain(result, server)
    assert result.returncode == 1, why
    said = result.stdout + result.stderr
    assert "Permission denied" in said, why
    assert str(dest) in said, why
    assert (dest / NAME).read_bytes() == OLD.body
    with ManifestStore(manifest) as store:
        assert store.get(NAME) == before
