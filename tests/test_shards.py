"""``run --shard I/N`` and Indexed Job sharding: stable selection, one fetch per file, refusals."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from ed_extractor.errors import UsageError
from ed_extractor.pipeline.lock import LOCK_FILE_NAME
from ed_extractor.pipeline.shards import (
    MARKER_NAME,
    Shard,
    claim_folder,
    shard_index,
    shard_settings,
)
from ed_extractor.services.sources.http import SAMPLE_RANGE
from ed_extractor.settings import Settings
from tests.httpd import QuietHandler, serve
from tests.test_cli import cli, json_lines

SHARDS = 3
FILES = {f"part-{number:02d}.bin": random.Random(number).randbytes(4096) for number in range(9)}
NAMES = [f"galaxy_{number}.json.gz" for number in range(50)]


def shard_env(index: int, shards: int = SHARDS) -> dict[str, str]:
    """The environment an Indexed Job gives pod ``index`` of a job run in ``shards`` shards."""
    return {
        "JOB_COMPLETION_INDEX": str(index),
        "ED_EXTRACTOR_SHARDS": str(shards),
        "ED_EXTRACTOR_RETRY_ATTEMPTS": "1",
        "ED_EXTRACTOR_PARALLEL": "1",
    }


def files_of(index: int) -> set[str]:
    return {name for name in FILES if shard_index(name, SHARDS) == index}


class Mirror(QuietHandler):
    """Serves FILES (ETag, byte ranges); counts the body GETs of each path.

    A body GET is any GET but the probe's 1 KiB sample (``Range: bytes=0-1023``). While ``held``
    has a path, its body GET sends half of what it asked for, then stalls until ``release``.
    """

    gets: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()
    held: ClassVar[set[str]] = set()
    stalled: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()

    def _answer(self) -> bytes | None:
        """Send the status and headers of the request; return the bytes its body is."""
        body = FILES.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return None
        first, last = self._range(len(body))
        self.send_response(200 if self.headers.get("Range") is None else 206)
        if self.headers.get("Range") is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(last + 1 - first))
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()[:16]}"')
        self.end_headers()
        return body[first : last + 1]

    def _range(self, size: int) -> tuple[int, int]:
        asked = self.headers.get("Range")
        if asked is None:
            return 0, size - 1
        first, _, last = asked.removeprefix("bytes=").partition("-")
        return int(first), min(int(last), size - 1) if last else size - 1

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        body = self._answer()
        if body is None or self.headers.get("Range") == SAMPLE_RANGE:
            self.wfile.write(body or b"")
            return
        with self.lock:
            self.gets[self.path.lstrip("/")] += 1
        if self.path.lstrip("/") in self.held:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.stalled.set()
            self.release.wait(timeout=30)
            return
        self.wfile.write(body)


@pytest.fixture
def mirror() -> Iterator[tuple[str, type[Mirror]]]:
    class Counting(Mirror):
        gets: ClassVar[Counter[str]] = Counter()
        held: ClassVar[set[str]] = set()
        stalled: ClassVar[threading.Event] = threading.Event()
        release: ClassVar[threading.Event] = threading.Event()

    with serve(Counting) as base:
        yield base, Counting
        Counting.release.set()


@pytest.fixture
def config(tmp_path: Path, mirror: tuple[str, type[Mirror]]) -> Path:
    base, _ = mirror
    path = tmp_path / "sources.toml"
    path.write_text("".join(f'[[source]]\nurl = "{base}/{name}"\n\n' for name in FILES))
    return path


def run_args(config: Path, dest: Path, *extra: str) -> list[str]:
    return ["run", "--config", str(config), "--dest", str(dest), "--json", *extra]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ed_extractor", *args]
    environ = {**os.environ, **env}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environ)  # fmt: skip


# --- the selection -------------------------------------------------------------------------


def test_a_source_s_shard_is_a_hash_of_its_name_the_same_in_every_process() -> None:
    here = {name: shard_index(name, 7) for name in NAMES}
    script = (
        "import json, sys\nfrom ed_extractor.pipeline.shards import shard_index\n"
        "print(json.dumps({n: shard_index(n, 7) for n in sys.argv[1:]}))"
    )
    for seed in ("0", "1"):  # another process with another hash() seed, names in another order
        shuffled = sorted(NAMES, key=lambda name: hashlib.md5(name.encode()).digest())
        result = subprocess.run(
            [sys.executable, "-c", script, *shuffled], capture_output=True, text=True,
            env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
        )  # fmt: skip
        assert json.loads(result.stdout) == here
    # the documented rule, written out: first 8 bytes of SHA-256 of the UTF-8 name, modulo N
    assert (
        shard_index("galaxy.json.gz", 5)
        == int.from_bytes(hashlib.sha256(b"galaxy.json.gz").digest()[:8], "big") % 5
    )
    assert (
        shard_index("é.json", 3)
        == int.from_bytes(hashlib.sha256("é.json".encode()).digest()[:8], "big") % 3
    )


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_the_shards_of_n_partition_the_sources(count: int) -> None:
    shards = [Shard(index, count) for index in range(count)]
    taken = [name for shard in shards for name in NAMES if shard.holds(name)]
    assert sorted(taken) == sorted(NAMES)  # each name in exactly one shard
    if count > 1:  # and the hash spreads them: no shard is empty among 50 names
        assert all(any(shard.holds(name) for name in NAMES) for shard in shards)


def test_an_object_store_shard_gets_a_scratch_folder_of_its_own() -> None:
    settings = Settings(dest="s3://bucket/raw/spansh")
    sharded = shard_settings(settings, Shard(1, 3))
    assert sharded.dest == settings.dest / "shard-1" == sharded.scratch
    assert sharded.dest_url == settings.dest_url
    assert shard_settings(settings, None) == settings
    explicit = Settings(dest="s3://bucket/raw/spansh", scratch=Path("/scratch"))
    assert shard_settings(explicit, Shard(1, 3)).dest == Path("/scratch/shard-1")


def test_of_shards_claiming_one_folder_at_once_exactly_one_wins(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    start_together = threading.Barrier(8)
    outcomes: dict[str, str] = {}

    def claim(shard: Shard) -> None:
        start_together.wait()
        try:
            claim_folder(dest, shard)
            outcomes[shard.label] = "claimed"
        except UsageError as exc:
            outcomes[shard.label] = str(exc)

    threads = [threading.Thread(target=claim, args=(Shard(i, 8),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [label for label, outcome in outcomes.items() if outcome == "claimed"]
    assert (dest / MARKER_NAME).read_text() == f"{winner}\n"
    assert all(f"holds shard {winner}" in outcomes[label] for label in outcomes if label != winner)
    assert [path.name for path in dest.iterdir()] == [MARKER_NAME]  # no staged file left


# --- three pods of an Indexed Job against one mirror ---------------------------------------


def test_three_indexed_pods_fetch_each_file_exactly_once(
    tmp_path: Path, config: Path, mirror: tuple[str, type[Mirror]]
) -> None:
    _, handler = mirror
    pods = [
        start(run_args(config, tmp_path / f"data-{index}"), shard_env(index))
        for index in range(SHARDS)
    ]
    results = [(pod, *pod.communicate(timeout=120)) for pod in pods]
    seen: list[str] = []
    for index, (pod, stdout, stderr) in enumerate(results):
        assert pod.returncode == 0, stderr
        lines = json_lines(stdout)
        names = {str(line["name"]) for line in lines}
        assert names == files_of(index)
        assert {line["shard"] for line in lines} == {f"{index}/{SHARDS}"}
        assert {line["status"] for line in lines} == {"downloaded"}
        dest = tmp_path / f"data-{index}"
        for name in names:
            assert (dest / name).read_bytes() == FILES[name]
        assert not (set(FILES) - names) & {p.name for p in dest.iterdir()}  # no other shard's
        assert (dest / MARKER_NAME).read_text() == f"{index}/{SHARDS}\n"
        seen += names
    assert sorted(seen) == sorted(FILES)  # the union is the whole list, with no file twice
    assert handler.gets == Counter(dict.fromkeys(FILES, 1))  # one body GET per file, over all pods


def test_a_killed_shard_rerun_alone_completes_its_files_and_nothing_else(
    tmp_path: Path, config: Path, mirror: tuple[str, type[Mirror]]
) -> None:
    _, handler = mirror
    mine = sorted(files_of(1))
    assert len(mine) >= 2
    handler.held.add(mine[-1])  # sources run in file order, one at a time: the last one stalls
    dest = tmp_path / "data-1"
    pod = start(run_args(config, dest), shard_env(1))
    assert handler.stalled.wait(timeout=60), "the shard never reached its last file"
    pod.send_signal(signal.SIGKILL)
    pod.communicate(timeout=30)
    assert pod.returncode == -signal.SIGKILL
    assert not (dest / mine[-1]).exists()  # killed mid-file: it never landed
    before = Counter(handler.gets)
    handler.held.clear()

    rerun = cli(*run_args(config, dest), env=shard_env(1))
    assert rerun.returncode == 0, rerun.stderr
    statuses = {str(line["name"]): line["status"] for line in json_lines(rerun.stdout)}
    assert statuses == {**dict.fromkeys(mine[:-1], "unchanged"), mine[-1]: "downloaded"}
    assert (dest / mine[-1]).read_bytes() == FILES[mine[-1]]
    fetched_by_rerun = handler.gets - before
    assert set(fetched_by_rerun) == {mine[-1]}  # nothing of shards 0 and 2, nothing done twice


# --- refusals: exit 2, one line, nothing written -------------------------------------------


@pytest.mark.parametrize("form", ["3/3", "1/0", "x", "1", "1/2/3", "-1/2", "1/ 3", ""])
def test_a_bad_shard_is_a_one_line_usage_error(tmp_path: Path, config: Path, form: str) -> None:
    result = cli(*run_args(config, tmp_path / "data", f"--shard={form}"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "--shard" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"JOB_COMPLETION_INDEX": "3", "ED_EXTRACTOR_SHARDS": "3"}, "expected 0 to 2"),
        ({"JOB_COMPLETION_INDEX": "one", "ED_EXTRACTOR_SHARDS": "3"}, "expected 0 to 2"),
        ({"ED_EXTRACTOR_SHARDS": "3"}, "needs JOB_COMPLETION_INDEX"),
        ({"JOB_COMPLETION_INDEX": "0", "ED_EXTRACTOR_SHARDS": "0"}, "ED_EXTRACTOR_SHARDS"),
    ],
)
def test_a_wrong_indexed_job_environment_is_a_usage_error(
    tmp_path: Path, config: Path, env: dict[str, str], says: str
) -> None:
    result = cli(*run_args(config, tmp_path / "data"), env={"JOB_COMPLETION_INDEX": "", **env})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert says in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


def test_an_explicit_shard_wins_over_the_indexed_job_environment(
    tmp_path: Path, config: Path
) -> None:
    result = cli(*run_args(config, tmp_path / "data", "--shard", "2/3"), env=shard_env(9))
    assert result.returncode == 0, result.stderr
    assert {line["shard"] for line in json_lines(result.stdout)} == {"2/3"}
    assert {str(line["name"]) for line in json_lines(result.stdout)} == files_of(2)


def test_a_second_shard_on_one_folder_is_refused_before_the_lock(
    tmp_path: Path, config: Path, mirror: tuple[str, type[Mirror]]
) -> None:
    _, handler = mirror
    dest = tmp_path / "data"
    first = cli(*run_args(config, dest), env=shard_env(0))
    assert first.returncode == 0, first.stderr
    listing = {path.name: path.stat().st_mtime_ns for path in dest.iterdir()}
    gets = Counter(handler.gets)

    with (dest / LOCK_FILE_NAME).open("a") as lock:  # shard 0 still running there
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        others = [
            cli(*run_args(config, dest), env=shard_env(1)),  # another shard
            cli(*run_args(config, dest, "--shard", "0/4")),  # another N
            cli(*run_args(config, dest), env={"JOB_COMPLETION_INDEX": ""}),  # unsharded
        ]
    for other in others:
        assert other.returncode == 2
        assert len(other.stderr.splitlines()) == 1, other.stderr
        assert f"holds shard 0/3 ({dest / MARKER_NAME})" in other.stderr  # not the lock's error
        assert other.stdout == ""
    assert {path.name: path.stat().st_mtime_ns for path in dest.iterdir()} == listing
    assert handler.gets == gets

    again = cli(*run_args(config, dest), env=shard_env(0))  # the same shard is welcome back
    assert again.returncode == 0, again.stderr
    (dest / MARKER_NAME).unlink()  # the reset the error tells of
    unsharded = cli(*run_args(config, dest), env={"JOB_COMPLETION_INDEX": ""})
    assert unsharded.returncode == 0, unsharded.stderr
    assert all("shard" not in line for line in json_lines(unsharded.stdout))
    assert len(json_lines(unsharded.stdout)) == len(FILES)


def test_a_shard_with_no_source_prints_nothing_and_succeeds(
    tmp_path: Path, config: Path, mirror: tuple[str, type[Mirror]]
) -> None:
    only = sorted(files_of(0))[0]
    result = cli(*run_args(config, tmp_path / "data", "--only", only, "--shard", "1/3"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "no source to fetch in this shard" in result.stderr
    assert not (tmp_path / "data" / "manifest.sqlite3").exists()
    assert not mirror[1].gets
