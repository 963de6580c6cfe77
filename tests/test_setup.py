"""A newcomer's set-up: a failed first make is retried, and an old Rust is named in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fake_command(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_half_made_virtualenv_is_set_up_again(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "Cargo.toml", "Cargo.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "rust").mkdir()
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()  # what a failed `python3 -m venv` leaves
    planned = subprocess.run(
        ["make", "-n", "-C", str(tmp_path), "build"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "python3 -m venv .venv" in planned
    assert planned.index("pip install") < planned.index("maturin develop")


def test_an_old_rust_stops_the_set_up_with_one_line(tmp_path: Path) -> None:
    _fake_command(tmp_path, "cargo", 'echo "cargo 1.65.0"')  # Debian bookworm's cargo
    _fake_command(tmp_path, "apt-cache", "exit 1")  # no rustc-web to install here
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-system.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "Rust >= 1.85 is required (found: cargo 1.65.0)" in line
    assert "rustc-web cargo-web" in line
