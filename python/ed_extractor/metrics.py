"""Prometheus metrics of a run: a text-format file written atomically, and a Pushgateway push.

A run exports, per source (label ``source``, the file name)::

    ed_extractor_source_status{source, status}    1 for this run's status, 0 for the two others
    ed_extractor_source_bytes{source}             size of the current file, when known
    ed_extractor_source_duration_seconds{source}  seconds this run spent on the source
    ed_extractor_source_last_success_timestamp_seconds{source}
        end of the last run that downloaded the source or found it unchanged (this run, else the
        manifest's history for a source that failed this time)
    ed_extractor_last_run_timestamp_seconds       end of this run (of the export, while running)

and, for the EDDN recorder, its counters since it started::

    ed_extractor_eddn_{received,written,dropped,malformed,reconnects,files}_total

The recorder exports while it runs (``PeriodicExport``: at an interval and whenever a file
closes), so a long-running Deployment is observable before it stops.

The file suits node-exporter's textfile collector; the push suits a CronJob, whose pods are gone
before Prometheus could scrape them. Exporting never changes the run's exit code: a failure is
logged as an error (the last-success timestamps going stale is what alerts should watch).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, push_to_gateway

from ed_extractor.manifest.models import AttemptStatus

if TYPE_CHECKING:
    from ed_extractor.manifest import Manifest
    from ed_extractor.pipeline.spansh_dump import SourceOutcome
    from ed_extractor.settings import Settings

log = logging.getLogger(__name__)

PUSH_JOB = "ed_extractor"
PUSH_TIMEOUT_S = 10.0
STATUSES: tuple[str, ...] = get_args(AttemptStatus)
#: The EDDN recorder's counters (``StreamStats``) and what each counts.
EDDN_COUNTERS: Mapping[str, str] = {
    "received": "EDDN messages received.",
    "written": "EDDN messages written to an hour file.",
    "dropped": "EDDN messages dropped (test schemas, schemas not kept).",
    "malformed": "EDDN messages that could not be decoded.",
    "reconnects": "EDDN subscriptions replaced after a silence.",
    "files": "EDDN hour files closed and recorded.",
}


def build_registry(
    outcomes: Sequence[SourceOutcome],
    *,
    finished_at: float,
    last_success: Mapping[str, float] | None = None,
    eddn: Mapping[str, int] | None = None,
) -> CollectorRegistry:
    """A registry holding the metrics of one run that ended at ``finished_at`` (Unix seconds).

    ``last_success`` gives, for sources that failed in this run, when they last succeeded;
    ``eddn``, the EDDN recorder's counters by name (``EDDN_COUNTERS``).
    """
    registry = CollectorRegistry(auto_describe=True)
    status = Gauge(
        "ed_extractor_source_status",
        "Outcome of the source in the last run: 1 for its status, 0 for the others.",
        ["source", "status"],
        registry=registry,
    )
    size = Gauge(
        "ed_extractor_source_bytes",
        "Size in bytes of the source's current file.",
        ["source"],
        registry=registry,
    )
    duration = Gauge(
        "ed_extractor_source_duration_seconds",
        "Seconds the last run spent on the source.",
        ["source"],
        registry=registry,
    )
    success = Gauge(
        "ed_extractor_source_last_success_timestamp_seconds",
        "Unix time of the last run that downloaded the source or found it unchanged.",
        ["source"],
        registry=registry,
    )
    last_run = Gauge(
        "ed_extractor_last_run_timestamp_seconds",
        "Unix time at which the last run ended.",
        registry=registry,
    )
    earlier = last_success or {}
    for outcome in outcomes:
        for name in STATUSES:
            status.labels(outcome.name, name).set(1 if outcome.status == name else 0)
        if outcome.bytes is not None:
            size.labels(outcome.name).set(outcome.bytes)
        duration.labels(outcome.name).set(outcome.elapsed_s)
        if outcome.status != "failed":
            success.labels(outcome.name).set(finished_at)
        elif outcome.name in earlier:
            success.labels(outcome.name).set(earlier[outcome.name])
    last_run.set(finished_at)
    for name, value in (eddn or {}).items():
        counter = Counter(f"ed_extractor_eddn_{name}", EDDN_COUNTERS[name], registry=registry)
        counter.inc(value)
    return registry


def write_metrics_file(registry: CollectorRegistry, path: Path) -> None:
    """Write ``registry`` to ``path`` in the Prometheus text format, atomically.

    The text goes to a temporary file in the same folder, is flushed to disk and renamed over
    ``path``, so a collector never reads half a file. Raises OSError.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(generate_latest(registry))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def push_metrics(
    registry: CollectorRegistry, url: str, *, job: str = PUSH_JOB, timeout: float = PUSH_TIMEOUT_S
) -> None:
    """Replace the metrics of ``job`` on the Pushgateway at ``url`` (HTTP PUT). Raises OSError."""
    push_to_gateway(url, job=job, registry=registry, timeout=timeout)


def last_successes(store: Manifest, names: Iterable[str]) -> dict[str, float]:
    """For each name, the Unix time of its newest attempt that did not fail, from the history."""
    found: dict[str, float] = {}
    for name in names:
        for attempt in store.history(name, limit=None):
            if attempt.status != "failed":
                found[name] = attempt.at.timestamp()
                break
    return found


class RunMetrics:
    """Collects the outcomes of a run as they pass, then exports them where the settings say.

    ``observe`` wraps the stream of outcomes without holding it up, so results are still printed
    as each source finishes; ``export`` writes the file and pushes, as configured.
    """

    def __init__(
        self,
        *,
        metrics_file: Path | None = None,
        pushgateway_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics_file = metrics_file
        self.pushgateway_url = pushgateway_url
        self.outcomes: list[SourceOutcome] = []
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> RunMetrics:
        """The exporter the run settings ask for (``metrics_file``, ``pushgateway_url``)."""
        return cls(metrics_file=settings.metrics_file, pushgateway_url=settings.pushgateway_url)

    @property
    def enabled(self) -> bool:
        """True when there is somewhere to export to."""
        return self.metrics_file is not None or self.pushgateway_url is not None

    def observe(self, outcomes: Iterable[SourceOutcome]) -> Iterator[SourceOutcome]:
        """Yield each outcome unchanged, keeping it for ``export``."""
        for outcome in outcomes:
            self.outcomes.append(outcome)
            yield outcome

    def export(
        self, store: Manifest | None = None, *, eddn: Mapping[str, int] | None = None
    ) -> bool:
        """Write and/or push the metrics of the observed outcomes; False if either failed.

        ``store`` (the run's manifest) supplies the last success of the sources that failed;
        ``eddn`` adds the EDDN recorder's counters. Failures are logged, never raised: metrics
        must not turn a good run into a failed one.
        """
        if not self.enabled:
            return True
        failed = [o.name for o in self.outcomes if o.status == "failed"]
        earlier: dict[str, float] = {}
        if store is not None and failed:
            try:
                earlier = last_successes(store, failed)
            except Exception as exc:
                log.warning("metrics: cannot read the manifest history", extra={"error": str(exc)})
        registry = build_registry(
            self.outcomes, finished_at=self._clock(), last_success=earlier, eddn=eddn
        )
        ok = True
        if self.metrics_file is not None:
            try:
                write_metrics_file(registry, self.metrics_file)
            except OSError as exc:
                ok = False
                log.error(
                    "metrics: cannot write the metrics file",
                    extra={"path": str(self.metrics_file), "error": str(exc)},
                )
        if self.pushgateway_url is not None:
            try:
                push_metrics(registry, self.pushgateway_url)
            except (OSError, ValueError) as exc:
                ok = False
                log.error(
                    "metrics: cannot push to the Pushgateway",
                    extra={"url": self.pushgateway_url, "error": str(exc)},
                )
        return ok


class PeriodicExport:
    """Exports a long run's metrics while it runs: when an outcome is added, and every interval.

    Called often (each turn of the run's loop) with everything observed so far; exports on the
    first call, whenever ``outcomes`` grew, and when ``interval_s`` passed since the last export.
    """

    def __init__(
        self,
        metrics: RunMetrics,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self._clock = clock
        self._exported_at: float | None = None
        self._outcomes = 0

    def __call__(self, outcomes: Sequence[SourceOutcome], eddn: Mapping[str, int]) -> None:
        """Export ``outcomes`` and the ``eddn`` counters if one is due."""
        if not self.metrics.enabled:
            return
        now = self._clock()
        if (
            self._exported_at is not None
            and len(outcomes) == self._outcomes
            and now - self._exported_at < self.interval_s
        ):
            return
        self._exported_at, self._outcomes = now, len(outcomes)
        self.metrics.outcomes = list(outcomes)
        self.metrics.export(eddn=eddn)
