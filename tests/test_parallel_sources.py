"""Several sources at once (--parallel K): completion order, isolation, one manifest, one lock."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from ed_extractor.manifest import ManifestStore
from ed_extractor.pipeline.concurrency import completed
from ed_extractor.pipeline.progress import RichProgressBoard
from ed_extractor.settings import Settings, parse_sources_file
from tests.httpd import QuietHandler, serve
from tests.test_cli import cli, json_lines

FILES = {name: os.urandom(200_000 + 1000 * i) for i, name in enumerate(["a.bin", "b.bin"])}
FILES["slow.bin"] = os.urandom(300_000)


def held_files(hold_s: float) -> type[BaseHTTPRequestHandler]:
    """A handler serving FILES; its full GET of slow.bin waits for a.bin and b.bin, then trickles.

    ``released`` records whether the wait ended because the others were served (they ran
    concurrently) rather than by the ``hold_s`` timeout (they came after).
    """

    class HeldFiles(QuietHandler):
        served: ClassVar[set[str]] = set()
        others_done = threading.Event()
        released: ClassVar[list[bool]] = []
        lock = threading.Lock()

        def _start(self, status: int, length: int, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{self.path}"')
            self.send_header("Accept-Ranges", "bytes")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()

        def _body(self) -> bytes | None:
            body = FILES.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
            return body

        def do_HEAD(self) -> None:
            body = self._body()
            if body is not None:
                self._start(200, len(body))

        def do_GET(self) -> None:
            body = self._body()
            if body is None:
                return
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes=0-"):
                end = min(int(ranged.removeprefix("bytes=0-")), len(body) - 1)
                self._start(206, end + 1, {"Content-Range": f"bytes 0-{end}/{len(body)}"})
                self.wfile.write(body[: end + 1])
                return
            if self.path == "/slow.bin":
                self.released.append(self.others_done.wait(hold_s))
            self._start(200, len(body))
            pieces = 15 if self.path == "/slow.bin" else 1  # then slow.bin trickles for 1.5 s
            step = -(-len(body) // pieces)
            for offset in range(0, len(body), step):
                self.wfile.write(body[offset : offset + step])
                self.wfile.flush()
                if pieces > 1:
                    time.sleep(0.1)
            with self.lock:
                self.served.add(self.path)
                if {"/a.bin", "/b.bin"} <= self.served:
                    self.others_done.set()

    return HeldFiles


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def held() -> Iterator[tuple[str, type[BaseHTTPRequestHandler]]]:
    handler = held_files(hold_s=4.0)
    with serve(handler) as base:
        yield base, handler


def test_sources_finish_in_completion_order_and_a_failure_stays_isolated(
    held: tuple[str, type[BaseHTTPRequestHandler]], tmp_path: Path
) -> None:
    base, handler = held
    dest = tmp_path / "data"
    metrics_file = tmp_path / "ed.prom"
    urls = [f"{base}/slow.bin", f"{base}/a.bin", f"{base}/missing.bin", f"{base}/b.bin"]
    result = cli(
        "fetch", *urls, "--dest", str(dest), "--parallel", "3", "--json",
        env={"ED_EXTRACTOR_METRICS_FILE": str(metrics_file), "ED_EXTRACTOR_RETRY_ATTEMPTS": "1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # one source failed, the others arrived
    lines = json_lines(result.stdout)
    names = [str(line["name"]) for line in lines]
    assert sorted(names) == ["a.bin", "b.bin", "missing.bin", "slow.bin"]
    assert names[-1] == "slow.bin"  # held until the others were sent: it finishes last
    assert getattr(handler, "released") == [True]  # noqa: B009 -- they ran while it waited
    by_name = {line["name"]: line for line in lines}
    assert by_name["missing.bin"]["status"] == "failed"
    assert "404" in str(by_name["missing.bin"]["error"])
    for name, body in FILES.items():
        assert by_name[name]["status"] == "downloaded"
        assert by_name[name]["sha256"] == sha256(body)
        assert (dest / name).read_bytes() == body
    assert not list(dest.glob("*.part*"))

    with ManifestStore(dest / "manifest.sqlite3") as store:
        assert {r.name: r.sha256 for r in store.records()} == {
            name: sha256(body) for name, body in FILES.items()
        }
        attempts = sorted((a.name, a.status) for a in store.history())
    assert attempts == [
        ("a.bin", "downloaded"), ("b.bin", "downloaded"), ("missing.bin", "failed"),
        ("slow.bin", "downloaded"),
    ]  # fmt: skip
    metrics = metrics_file.read_text()
    for name in ["a.bin", "b.bin", "slow.bin", "missing.bin"]:
        assert f'ed_extractor_source_duration_seconds{{source="{name}"}}' in metrics
    assert 'ed_extractor_source_status{source="missing.bin",status="failed"} 1.0' in metrics


def test_parallel_comes_from_the_sources_file_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "sources.toml"
    order = ["slow.bin", "a.bin", "b.bin"]

    def run(base: str, env: dict[str, str]) -> list[str]:
        config.write_text(
            "[defaults]\nparallel = 3\n\n"
            + "".join(f'[[source]]\nurl = "{base}/{name}"\n\n' for name in order)
        )
        dest = tmp_path / f"data-{len(env)}"
        result = cli("run", "--config", str(config), "--dest", str(dest), "--json", env=env)
        assert result.returncode == 0, result.stderr
        return [str(line["name"]) for line in json_lines(result.stdout)]

    concurrent = held_files(hold_s=4.0)
    with serve(concurrent) as base:
        assert run(base, {})[-1] == "slow.bin"
    assert getattr(concurrent, "released") == [True]  # noqa: B009

    one_at_a_time = held_files(hold_s=0.5)
    with serve(one_at_a_time) as base:
        assert run(base, {"ED_EXTRACTOR_PARALLEL": "1"}) == order  # one after the other
    assert getattr(one_at_a_time, "released") == [False]  # noqa: B009 -- slow.bin ran alone


@pytest.mark.parametrize(
    ("args", "config"),
    [(["--parallel", "0"], None), ([], "[defaults]\nparallel = 0\n")],
)
def test_a_bad_parallel_value_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], config: str | None
) -> None:
    path = tmp_path / "sources.toml"
    path.write_text((config or "") + '[[source]]\nurl = "http://127.0.0.1:9/x.bin"\n')
    result = cli("run", "--config", str(path), "--dest", str(tmp_path), *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "parallel" in result.stderr


def test_two_urls_stored_under_one_name_are_refused(tmp_path: Path) -> None:
    result = cli("fetch", "http://127.0.0.1:9/a/x.bin", "http://127.0.0.1:9/b/x.bin",
                 "--dest", str(tmp_path))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ed-extractor: error: several URLs would be stored as 'x.bin'; fetch them one by one"
    )
    assert list(tmp_path.iterdir()) == []


def test_sources_at_once_prefers_the_setting_then_the_file_then_two() -> None:
    file = parse_sources_file('[defaults]\nparallel = 5\n[[source]]\nurl = "http://h/x.gz"\n')
    assert file.parallel == 5
    assert "parallel" not in file.sources[0].model_dump()
    assert Settings(parallel=3).sources_at_once(file) == 3
    assert Settings().sources_at_once(file) == 5
    assert Settings().sources_at_once() == 2


# --- the building blocks ------------------------------------------------------------------------


def test_completed_yields_in_order_of_completion() -> None:
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    assert list(completed(nap, [0.6, 0.0, 0.3], workers=3)) == [0.0, 0.3, 0.6]


def test_completed_raises_a_failure_in_the_consumer() -> None:
    def boom(item: int) -> int:
        if item == 2:
            raise ValueError("two")
        return item

    with pytest.raises(ValueError, match="two"):
        list(completed(boom, [1, 2, 3], workers=1))


def test_closing_completed_early_starts_no_further_item() -> None:
    started: list[int] = []
    gate = threading.Event()

    def note(item: int) -> int:
        started.append(item)
        if item > 0:
            gate.wait(5)
        return item

    results = completed(note, list(range(10)), workers=2)
    assert next(results) == 0
    results.close()
    gate.set()  # the two items in hand now finish; no thread takes another
    time.sleep(0.3)
    assert set(started) <= {0, 1, 2}  # what was in hand when it closed, nothing after


def test_concurrent_bars_share_one_display_that_stops_with_the_last() -> None:
    board = RichProgressBoard()
    first, second = board.bar(), board.bar()
    first.start("a.bin", 100)
    second.start("b.bin", 200)
    first.advance(100)
    first.stop()
    assert board.progress.live.is_started
    second.advance(50)
    second.stop()
    second.stop()  # a second stop is harmless
    assert not board.progress.live.is_started
    assert [task.completed for task in board.progress.tasks] == [100, 50]
