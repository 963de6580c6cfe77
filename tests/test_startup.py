"""Start-up: --version, probe and manifest load only what they use (the cost is measured apart)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Modules that only downloading needs: the progress bar, metrics, retries, the content checks.
DOWNLOAD_ONLY = ["rich", "prometheus_client", "tenacity", "isal", "backports.zstd"]
_LOADED = """
import json, sys
from ed_extractor.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules_loaded_by(*args: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``ed-extractor ARGS``."""
    result = subprocess.run(
        [sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, check=True
    )
    loaded: list[str] = json.loads(result.stderr.splitlines()[-1])
    return set(loaded)


def test_version_loads_no_dependency() -> None:
    loaded = modules_loaded_by("--version")
    assert loaded.isdisjoint(["httpx", "pydantic", "pydantic_settings", "magic", *DOWNLOAD_ONLY])


@pytest.mark.parametrize(
    ("args", "not_needed"),
    [
        (["probe", "http://127.0.0.1:9/x.json.gz"], DOWNLOAD_ONLY),
        (["manifest", "--dest", "{dest}"], ["httpx", "magic", *DOWNLOAD_ONLY]),
    ],
    ids=["probe", "manifest"],
)
def test_a_command_loads_only_what_it_uses(
    tmp_path: Path, args: list[str], not_needed: list[str]
) -> None:
    loaded = modules_loaded_by(*(arg.format(dest=tmp_path) for arg in args))
    assert "ed_extractor.cli" in loaded
    assert loaded.isdisjoint(not_needed), sorted(loaded.intersection(not_needed))
