"""Run metrics: the Prometheus text file (atomic) and the Pushgateway push, against real servers."""

from __future__ import annotations

import gzip
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ed_extractor.manifest import ManifestStore
from ed_extractor.metrics import RunMetrics, build_registry, push_metrics, write_metrics_file
from ed_extractor.pipeline.spansh_dump import SourceOutcome
from ed_extractor.settings import Settings
from tests.httpd import QuietHandler, serve

FINISHED_AT = 1_750_000_000.0


def outcome(
    name: str, status: str, *, size: int | None = 10, elapsed_s: float = 1.5
) -> SourceOutcome:
    failed = status == "failed"
    return SourceOutcome(
        name=name,
        url=f"http://127.0.0.1/{name}",
        status=status,  # type: ignore[arg-type]
        path=None if failed else f"/data/{name}",
        bytes=None if failed else size,
        error="HTTP 503" if failed else None,
        elapsed_s=elapsed_s,
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


OUTCOMES = [
    outcome("galaxy_1day.json.gz", "downloaded", size=1234, elapsed_s=2.25),
    outcome("galaxy_7days.json.gz", "unchanged", size=99, elapsed_s=0.125),
    outcome("galaxy_stations.json.gz", "failed", elapsed_s=3.0),
]


# --- what the metrics say -----------------------------------------------------------------------


def test_each_source_has_one_status_set_to_one_and_the_others_to_zero(tmp_path: Path) -> None:
    path = tmp_path / "ed.prom"
    write_metrics_file(build_registry(OUTCOMES, finished_at=FINISHED_AT), path)
    text = path.read_text()
    for item in OUTCOMES:
        for status in ("downloaded", "unchanged", "failed"):
            expected = 1.0 if status == item.status else 0.0
            got = value(text, "ed_extractor_source_status", source=item.name, status=status)
            assert got == expected, (item.name, status)


def test_bytes_and_seconds_per_source(tmp_path: Path) -> None:
    path = tmp_path / "ed.prom"
    write_metrics_file(build_registry(OUTCOMES, finished_at=FINISHED_AT), path)
    text = path.read_text()
    assert value(text, "ed_extractor_source_bytes", source="galaxy_1day.json.gz") == 1234
    assert value(text, "ed_extractor_source_bytes", source="galaxy_7days.json.gz") == 99
    assert value(text, "ed_extractor_source_bytes", source="galaxy_stations.json.gz") is None
    name = "ed_extractor_source_duration_seconds"
    assert value(text, name, source="galaxy_1day.json.gz") == 2.25
    assert value(text, name, source="galaxy_stations.json.gz") == 3.0
    assert value(text, "ed_extractor_last_run_timestamp_seconds") == FINISHED_AT


def test_last_success_is_this_run_for_good_sources_and_the_history_for_failed_ones(
    tmp_path: Path,
) -> None:
    registry = build_registry(
        OUTCOMES,
        finished_at=FINISHED_AT,
        last_success={"galaxy_stations.json.gz": FINISHED_AT - 86400},
    )
    path = tmp_path / "ed.prom"
    write_metrics_file(registry, path)
    text = path.read_text()
    name = "ed_extractor_source_last_success_timestamp_seconds"
    assert value(text, name, source="galaxy_1day.json.gz") == FINISHED_AT
    assert value(text, name, source="galaxy_7days.json.gz") == FINISHED_AT
    assert value(text, name, source="galaxy_stations.json.gz") == FINISHED_AT - 86400


def test_a_source_that_never_succeeded_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "ed.prom"
    write_metrics_file(build_registry(OUTCOMES, finished_at=FINISHED_AT), path)
    name = "ed_extractor_source_last_success_timestamp_seconds"
    assert value(path.read_text(), name, source="galaxy_stations.json.gz") is None


# --- the file -----------------------------------------------------------------------------------


def test_the_file_replaces_the_previous_one_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "ed_extractor.prom"
    write_metrics_file(build_registry(OUTCOMES[:1], finished_at=1.0), path)
    write_metrics_file(build_registry(OUTCOMES, finished_at=2.0), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ed_extractor.prom"]
    assert value(path.read_text(), "ed_extractor_last_run_timestamp_seconds") == 2.0
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ed_extractor.prom"
    write_metrics_file(build_registry(OUTCOMES, finished_at=1.0), path)
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_metrics_file(build_registry(OUTCOMES, finished_at=2.0), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ed_extractor.prom"]


# --- the Pushgateway ----------------------------------------------------------------------------


class RecordingPushgateway(QuietHandler):
    """Answers like a Pushgateway (200 to PUT/POST) and records every request."""

    requests: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []
    lock = threading.Lock()

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.lock:
            self.requests.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = _record
    do_POST = _record


@pytest.fixture
def pushgateway() -> Iterator[str]:
    RecordingPushgateway.requests = []
    with serve(RecordingPushgateway) as url:
        yield url


def test_push_puts_the_run_under_the_job_on_the_pushgateway(pushgateway: str) -> None:
    push_metrics(build_registry(OUTCOMES, finished_at=FINISHED_AT), pushgateway)
    [(method, path, headers, body)] = RecordingPushgateway.requests
    assert method == "PUT"  # replaces the group: sources dropped from the config disappear
    assert path == "/metrics/job/ed_extractor"
    assert headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert value(text, "ed_extractor_source_bytes", source="galaxy_1day.json.gz") == 1234
    assert value(text, "ed_extractor_last_run_timestamp_seconds") == FINISHED_AT


def test_an_unreachable_pushgateway_is_logged_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = RunMetrics(
        metrics_file=tmp_path / "ed.prom", pushgateway_url=f"http://127.0.0.1:{port}"
    )
    list(metrics.observe(OUTCOMES))
    with caplog.at_level(logging.ERROR, logger="ed_extractor.metrics"):
        assert metrics.export() is False
    assert "Pushgateway" in caplog.text
    assert (tmp_path / "ed.prom").exists()  # the file is written all the same


def test_an_unwritable_metrics_file_is_logged_and_does_not_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ed.prom").mkdir()  # a directory where the file should go
    metrics = RunMetrics(metrics_file=tmp_path / "ed.prom")
    list(metrics.observe(OUTCOMES))
    with caplog.at_level(logging.ERROR, logger="ed_extractor.metrics"):
        assert metrics.export() is False
    assert "metrics file" in caplog.text


# --- RunMetrics ---------------------------------------------------------------------------------


def test_observe_passes_each_outcome_on_as_soon_as_it_arrives() -> None:
    produced: list[str] = []

    def fetch_all() -> Iterator[SourceOutcome]:
        for item in OUTCOMES:
            produced.append(item.name)
            yield item

    metrics = RunMetrics()
    stream = metrics.observe(fetch_all())
    first = next(stream)
    assert first is OUTCOMES[0]
    assert produced == [OUTCOMES[0].name]  # nothing fetched ahead of the printing
    assert list(stream) == OUTCOMES[1:]
    assert metrics.outcomes == OUTCOMES


def test_without_a_file_or_a_gateway_nothing_is_exported(tmp_path: Path) -> None:
    metrics = RunMetrics()
    list(metrics.observe(OUTCOMES))
    assert metrics.enabled is False
    assert metrics.export() is True


def test_the_manifest_history_gives_a_failed_source_its_last_success(tmp_path: Path) -> None:
    with ManifestStore(tmp_path / "manifest.sqlite3") as store:
        url = "http://127.0.0.1/galaxy_stations.json.gz"
        store.record_attempt("galaxy_stations.json.gz", url, "unchanged", elapsed_s=0.1)
        store.record_attempt("galaxy_stations.json.gz", url, "failed", error="x", elapsed_s=0.1)
        [failed_attempt, success] = store.history("galaxy_stations.json.gz")
        metrics = RunMetrics(metrics_file=tmp_path / "ed.prom", clock=lambda: FINISHED_AT)
        list(metrics.observe(OUTCOMES))
        assert metrics.export(store) is True
    name = "ed_extractor_source_last_success_timestamp_seconds"
    got = value((tmp_path / "ed.prom").read_text(), name, source="galaxy_stations.json.gz")
    assert got == pytest.approx(success.at.timestamp())
    assert failed_attempt.status == "failed"


def test_settings_read_the_metrics_file_and_the_gateway_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ED_EXTRACTOR_METRICS_FILE", str(tmp_path / "ed.prom"))
    monkeypatch.setenv("ED_EXTRACTOR_PUSHGATEWAY_URL", "http://pushgateway:9091")
    metrics = RunMetrics.from_settings(Settings())
    assert metrics.metrics_file == tmp_path / "ed.prom"
    assert metrics.pushgateway_url == "http://pushgateway:9091"


# --- through the command line -------------------------------------------------------------------


class GzipFile(QuietHandler):
    """Serves one small gzip file with validators, for HEAD, GET and ranged GET."""

    body = gzip.compress(b'[{"name": "Sol"}]\n', mtime=0)

    def _headers(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", '"v1"')
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_HEAD(self) -> None:
        self._headers(200, len(self.body))

    def do_GET(self) -> None:
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=0-"):
            end = min(
                int(ranged.removeprefix("bytes=0-") or len(self.body) - 1), len(self.body) - 1
            )
            self.send_response(206)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Range", f"bytes 0-{end}/{len(self.body)}")
            self.send_header("Content-Length", str(end + 1))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            self.wfile.write(self.body[: end + 1])
            return
        self._headers(200, len(self.body))
        self.wfile.write(self.body)


def test_a_cli_run_writes_the_metrics_file_and_pushes(tmp_path: Path, pushgateway: str) -> None:
    metrics_file = tmp_path / "textfile" / "ed_extractor.prom"
    with serve(GzipFile) as base:
        result = subprocess.run(
            [sys.executable, "-m", "ed_extractor", "fetch", f"{base}/sol.json.gz", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "ED_EXTRACTOR_DEST": str(tmp_path / "data"),
                "ED_EXTRACTOR_METRICS_FILE": str(metrics_file),
                "ED_EXTRACTOR_PUSHGATEWAY_URL": pushgateway,
            },
            check=False,
        )
    assert result.returncode == 0, result.stderr
    text = metrics_file.read_text()
    assert value(text, "ed_extractor_source_status", source="sol.json.gz", status="downloaded") == 1
    assert value(text, "ed_extractor_source_bytes", source="sol.json.gz") == len(GzipFile.body)
    [(method, _, _, body)] = RecordingPushgateway.requests
    assert method == "PUT"
    assert samples(body.decode()) == samples(text)  # the same run, the same figures
