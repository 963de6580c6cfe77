"""Specification of ``ed-extractor verify``: damage named by file, exit code, nothing changed."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pty
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import blake3
import pytest

from ed_extractor.manifest import ManifestRecord, ManifestStore
from ed_extractor.pipeline.lock import LOCK_FILE_NAME
from tests.httpd import QuietHandler, serve
from tests.test_cli import cli, json_lines

VERIFY_KEYS = {"name", "path", "status", "algo", "bytes", "elapsed_s"}
WITH_BLAKE3 = "with_blake3.bin"
SHA256_ONLY = "sha256_only.bin"


def store_file(dest: Path, name: str, data: bytes, *, with_blake3: bool) -> ManifestRecord:
    """Write ``data`` as ``dest/name`` and record it, as a download would."""
    path = dest / name
    path.write_bytes(data)
    record = ManifestRecord(
        name=name,
        url=f"https://downloads.example/{name}",
        final_url=f"https://downloads.example/{name}",
        path=str(path.resolve()),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        blake3=blake3.blake3(data).hexdigest() if with_blake3 else None,
        regime="binary",
        mime_type="application/octet-stream",
        downloaded_at=datetime.now(UTC),
    )
    with ManifestStore(dest / "manifest.sqlite3") as store:
        store.put(record, elapsed_s=0.1, bytes_transferred=len(data))
    return record


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """A destination with two recorded files: one with a BLAKE3 digest, one with SHA-256 only."""
    # 3 MiB + 1: several BLAKE3 chunks and an odd tail, more than one update of a small buffer
    store_file(tmp_path, WITH_BLAKE3, os.urandom(3 * 2**20 + 1), with_blake3=True)
    store_file(tmp_path, SHA256_ONLY, os.urandom(2**20 - 7), with_blake3=False)
    return tmp_path


def verify(
    dest: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli("verify", "--dest", str(dest), "--json", *args, env=env)


def by_name(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    lines = json_lines(result.stdout)
    assert all(set(line) == VERIFY_KEYS for line in lines), lines
    return {str(line["name"]): line for line in lines}


def snapshot(dest: Path) -> tuple[dict[str, bytes], list[ManifestRecord]]:
    """The stored files' bytes and the current records: what verify must never change."""
    files = {p.name: p.read_bytes() for p in dest.iterdir() if p.suffix == ".bin"}
    with ManifestStore(dest / "manifest.sqlite3") as store:
        return files, store.records()


@pytest.mark.parametrize("backend", ["1", "0"], ids=["native", "python"])
def test_intact_files_are_ok_with_blake3_where_recorded_and_sha256_elsewhere(
    dest: Path, backend: str
) -> None:
    result = verify(dest, env={"ED_EXTRACTOR_NATIVE": backend})
    assert result.returncode == 0, result.stderr
    checks = by_name(result)
    assert checks[WITH_BLAKE3]["status"] == "ok"
    assert checks[WITH_BLAKE3]["algo"] == "blake3"
    assert checks[WITH_BLAKE3]["bytes"] == 3 * 2**20 + 1
    assert checks[WITH_BLAKE3]["path"] == str((dest / WITH_BLAKE3).resolve())
    assert checks[SHA256_ONLY]["status"] == "ok"
    assert checks[SHA256_ONLY]["algo"] == "sha256"


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)


def _truncate(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 1)


def _extend(path: Path) -> None:
    with path.open("ab") as file:
        file.write(b"\0")


@pytest.mark.parametrize(
    ("damage", "status"),
    [
        (_flip_a_byte, "mismatch"),
        (_truncate, "size-mismatch"),
        (_extend, "size-mismatch"),
        (Path.unlink, "missing"),
    ],
    ids=["flipped-byte", "truncated", "extended", "missing"],
)
@pytest.mark.parametrize("name", [WITH_BLAKE3, SHA256_ONLY])
@pytest.mark.parametrize("backend", ["1", "0"], ids=["native", "python"])
def test_damage_is_named_and_exits_1_without_touching_anything(
    dest: Path, damage: object, status: str, name: str, backend: str
) -> None:
    assert callable(damage)
    damage(dest / name)
    before = snapshot(dest)
    result = verify(dest, env={"ED_EXTRACTOR_NATIVE": backend})
    assert result.returncode == 1, result.stderr
    checks = by_name(result)
    assert checks[name]["status"] == status
    [other] = {WITH_BLAKE3, SHA256_ONLY} - {name}
    assert checks[other]["status"] == "ok"
    assert snapshot(dest) == before


def test_sha256_can_be_asked_for_and_catches_a_flipped_byte_too(dest: Path) -> None:
    assert by_name(verify(dest, "--algo", "sha256"))[WITH_BLAKE3]["algo"] == "sha256"
    _flip_a_byte(dest / WITH_BLAKE3)
    result = verify(dest, "--algo", "sha256", "--only", WITH_BLAKE3)
    assert result.returncode == 1
    assert by_name(result) == {WITH_BLAKE3: by_name(result)[WITH_BLAKE3]}
    assert by_name(result)[WITH_BLAKE3]["status"] == "mismatch"


def test_a_symlink_in_place_of_a_file_is_missing(
    dest: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "copy.bin"
    outside.write_bytes((dest / SHA256_ONLY).read_bytes())
    (dest / SHA256_ONLY).unlink()
    (dest / SHA256_ONLY).symlink_to(outside)
    result = verify(dest)
    assert result.returncode == 1
    assert by_name(result)[SHA256_ONLY]["status"] == "missing"


def test_the_text_output_has_one_line_per_file(dest: Path) -> None:
    _extend(dest / SHA256_ONLY)
    result = cli("verify", "--dest", str(dest))
    assert result.returncode == 1
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["ok", "blake3", WITH_BLAKE3]
    assert lines[1].split()[:3] == ["size-mismatch", "sha256", SHA256_ONLY]


def test_record_appends_verdicts_to_the_history_and_keeps_the_records(dest: Path) -> None:
    _flip_a_byte(dest / SHA256_ONLY)
    _, records = snapshot(dest)
    result = verify(dest, "--record")
    assert result.returncode == 1
    with ManifestStore(dest / "manifest.sqlite3") as store:
        rows = {row.name: row for row in store.verifications()}
        assert store.records() == records
    assert rows[SHA256_ONLY].status == "mismatch"
    assert rows[SHA256_ONLY].algo == "sha256"
    assert rows[WITH_BLAKE3].status == "ok"
    assert rows[WITH_BLAKE3].bytes == 3 * 2**20 + 1
    verify(dest)  # without --record: no new row
    with ManifestStore(dest / "manifest.sqlite3") as store:
        assert len(store.verifications()) == 2


def test_a_manifest_given_alone_names_the_folder(dest: Path) -> None:
    result = cli("verify", "--manifest", str(dest / "manifest.sqlite3"), "--json")
    assert result.returncode == 0, result.stderr
    assert set(by_name(result)) == {WITH_BLAKE3, SHA256_ONLY}
    assert (dest / LOCK_FILE_NAME).exists()


def test_an_empty_manifest_verifies_nothing_and_exits_0(tmp_path: Path) -> None:
    ManifestStore(tmp_path / "manifest.sqlite3").close()
    result = verify(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope.bin"], "does not record: nope.bin"),
        (["--algo", "md5"], "invalid choice"),
        (["--algo", "blake3"], f"no BLAKE3 is recorded for {SHA256_ONLY}"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(dest: Path, args: list[str], message: str) -> None:
    result = verify(dest, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_no_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = verify(tmp_path)
    assert result.returncode == 2
    assert "no manifest" in result.stderr
    assert not (tmp_path / "manifest.sqlite3").exists()


# --- the destination lock -------------------------------------------------------------------


class _GatedBody(QuietHandler):
    """Serves /data.bin; a full GET sends half the body, then waits for ``gate`` to open."""

    body: ClassVar[bytes] = b""
    gate = threading.Event()
    halfway = threading.Event()

    def _headers(self, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", f'"{hashlib.sha256(self.body).hexdigest()[:16]}"')
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._headers(200, len(self.body), {})

    def do_GET(self) -> None:
        body = self.body
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=0-"):  # the probe's sample
            end = min(int(ranged.removeprefix("bytes=0-") or len(body) - 1), len(body) - 1)
            self._headers(206, end + 1, {"Content-Range": f"bytes 0-{end}/{len(body)}"})
            self.wfile.write(body[: end + 1])
            return
        self._headers(200, len(body), {})
        half = len(body) // 2
        self.wfile.write(body[:half])
        self.wfile.flush()
        self.halfway.set()
        self.gate.wait(timeout=60)
        self.wfile.write(body[half:])


def test_verify_waits_for_a_running_fetch_and_checks_the_file_it_stored(tmp_path: Path) -> None:
    old, new = os.urandom(2**20), os.urandom(2**20 + 5)
    with serve(_GatedBody) as base:
        url = f"{base}/data.bin"
        _GatedBody.body, _GatedBody.halfway, _GatedBody.gate = (
            old,
            threading.Event(),
            threading.Event(),
        )
        _GatedBody.gate.set()
        first = cli("fetch", url, "--dest", str(tmp_path))
        assert first.returncode == 0, first.stderr

        _GatedBody.body, _GatedBody.halfway, _GatedBody.gate = (
            new,
            threading.Event(),
            threading.Event(),
        )
        fetch = subprocess.Popen(
            [sys.executable, "-m", "ed_extractor", "fetch", url, "--dest", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert _GatedBody.halfway.wait(timeout=60), "the fetch never started its body"
            # the fetch holds the lock exclusively while it replaces data.bin
            refused = verify(tmp_path)
            assert refused.returncode == 1
            assert "another ed-extractor run holds" in refused.stderr
            assert refused.stdout == ""

            waiting = subprocess.Popen(
                [sys.executable, "-m", "ed_extractor", "verify", "--dest", str(tmp_path), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "ED_EXTRACTOR_LOCK_WAIT_S": "60"},
            )  # fmt: skip
            time.sleep(1.0)
            assert waiting.poll() is None, "verify read while the fetch held the lock"
            _GatedBody.gate.set()
            assert fetch.wait(timeout=60) == 0, fetch.communicate()[1]
            out, err = waiting.communicate(timeout=60)
        finally:
            _GatedBody.gate.set()
            fetch.kill()
            fetch.wait()
    assert waiting.returncode == 0, err
    [check] = json_lines(out)
    assert check["status"] == "ok"
    assert check["bytes"] == len(new)  # the file the fetch finished, not the one it replaced


def test_readers_share_the_lock_and_keep_a_fetch_out(dest: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; "
         "from ed_extractor.pipeline.lock import destination_lock\n"
         "with destination_lock(Path(sys.argv[1]), shared=True):\n"
         "    print('held', flush=True); time.sleep(60)",
         str(dest)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert verify(dest).returncode == 0  # another reader: both hold it shared
        fetch = cli("fetch", "http://127.0.0.1:1/x.bin", "--dest", str(dest))
        assert fetch.returncode == 1
        assert "another ed-extractor run holds" in fetch.stderr
    finally:
        holder.kill()
        holder.wait()
    with (dest / LOCK_FILE_NAME).open("rb") as file:  # released with the process
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_terminal_gets_a_progress_bar_and_stdout_stays_clean(dest: Path) -> None:
    controller, terminal = pty.openpty()
    drawn = bytearray()

    def read_the_screen() -> None:
        with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
            while chunk := os.read(controller, 65536):
                drawn.extend(chunk)

    reader = threading.Thread(target=read_the_screen, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ed_extractor", "verify", "--dest", str(dest), "--json"],
            stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=120, check=False,
            env={**os.environ, "COLUMNS": "120"},
        )  # fmt: skip
    finally:
        os.close(terminal)
        reader.join(timeout=10)
        os.close(controller)
    assert result.returncode == 0
    assert set(by_name(result)) == {WITH_BLAKE3, SHA256_ONLY}
    screen = drawn.decode(errors="replace")
    assert WITH_BLAKE3 in screen
    assert "3.1/3.1 MB" in screen  # rich's DownloadColumn at the end of the 3 MiB + 1 file


def test_a_manifest_of_the_release_before_blake3_is_verified_with_sha256(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(Path(__file__).parent / "data" / "manifest-v1", copy)
    result = cli("verify", "--manifest", str(copy / "manifest.sqlite3"), "--json")
    assert result.returncode == 1  # the fixture records one file that is gone
    assert {name: (c["status"], c["algo"]) for name, c in by_name(result).items()} == {
        "galaxy_1day.json.gz": ("ok", "sha256"),
        "galaxy_gone.json.gz": ("missing", "sha256"),
        "systems_1week.bin": ("ok", "sha256"),
    }
