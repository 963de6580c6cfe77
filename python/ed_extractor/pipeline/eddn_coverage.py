"""The coverage (liveness) log of each EDDN replica, and the gaps in which no replica was receiving.

A replica appends one JSON line per event to ``<dest>/eddn/_replicas/<replica>/coverage.jsonl``:
``{"at": "<ISO 8601 UTC, ms>", "event": "start"|"beat"|"connected"|"silent"|"stop"}``, flushed and
fsync'd as written. A "beat" every HEARTBEAT_S is ~17,300 lines (~1 MB) a day: bounded, kept as is.

The rule: a replica covers [t, t + 2*HEARTBEAT_S) after each "start", "beat" or "connected" at t
(so a kill -9 overstates its coverage by at most two heartbeats), minus what follows a "silent" or
"stop" until its next covering event. A gap is an interval no replica covers; one shorter than
GAP_MIN_S = 2*HEARTBEAT_S is not a gap. Heartbeats do not depend on message traffic: EDDN's normal
quiet is covered; the socket's ZMTP heartbeats and the silence timeout decide whether it is alive.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Final

from ed_extractor.errors import StorageError

log = logging.getLogger(__name__)

HEARTBEAT_S: Final = 5.0
"""How often a subscribed replica writes a "beat" (``ED_EXTRACTOR_EDDN_HEARTBEAT_S``)."""
COVERAGE_FILE: Final = "coverage.jsonl"
REPLICAS_FOLDER: Final = "eddn/_replicas"
COVERING_EVENTS: Final = frozenset({"start", "beat", "connected"})
ENDING_EVENTS: Final = frozenset({"silent", "stop"})

Interval = tuple[datetime, datetime]
"""A half-open interval [start, end) of UTC times."""


def format_instant(at: datetime) -> str:
    """``2026-12-07T04:20:00.123Z``: ISO 8601, UTC, milliseconds."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) as an aware UTC datetime."""
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)


class CoverageLog:
    """The writing side: appends a replica's events to ``<folder>/coverage.jsonl``.

    ``beat_if_due`` writes a beat when HEARTBEAT_S has passed since the last covering event, so a
    loop may call it at every turn.
    """

    def __init__(
        self,
        folder: Path,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = folder / COVERAGE_FILE
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._file: BinaryIO | None = None
        self._last_covering = float("-inf")

    def start(self) -> None:
        """The recorder starts (opens the log in append mode)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
        except OSError as exc:
            raise StorageError(
                str(self.path), f"cannot open the coverage log ({exc.strerror})"
            ) from None
        self._covering("start")

    def beat(self) -> None:
        """The socket is subscribed and has not hit the silence timeout."""
        self._covering("beat")

    def beat_if_due(self) -> None:
        """A beat, if HEARTBEAT_S has passed since the last start, beat or connected."""
        if time.monotonic() - self._last_covering >= self.heartbeat_s:
            self.beat()

    def connected(self) -> None:
        """A (new) subscription is up."""
        self._covering("connected")

    def silent(self) -> None:
        """The stream hit the silence timeout and is reconnected; the next beat is due in full."""
        self._append("silent")
        self._last_covering = time.monotonic()

    def stop(self) -> None:
        """A clean exit: the last line, and the log is closed."""
        if self._file is None:
            return
        try:
            self._append("stop")
        finally:
            self._file.close()
            self._file = None

    def _covering(self, event: str) -> None:
        self._append(event)
        self._last_covering = time.monotonic()

    def _append(self, event: str) -> None:
        if self._file is None:
            raise RuntimeError("CoverageLog.start() was not called")
        line = json.dumps({"at": format_instant(self._clock()), "event": event}) + "\n"
        try:
            self._file.write(line.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise StorageError(
                str(self.path), f"cannot write the coverage log ({exc.strerror})"
            ) from None


@dataclass(frozen=True)
class CoverageEvent:
    """One line of a coverage log."""

    at: datetime
    event: str


@dataclass(frozen=True)
class Gap:
    """An interval in which no replica was receiving."""

    start: datetime
    end: datetime
    seconds: float

    def as_dict(self) -> dict[str, str | float]:
        """The object ``eddn gaps --json`` prints."""
        return {
            "start": format_instant(self.start),
            "end": format_instant(self.end),
            "seconds": round(self.seconds, 3),
        }


def read_events(path: Path) -> tuple[list[CoverageEvent], int]:
    """The events of one log in time order, and how many lines were damaged (skipped)."""
    events: list[CoverageEvent] = []
    damaged = 0
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise StorageError(path, f"cannot read the coverage log ({exc.strerror})") from None
    for line in text.splitlines():
        event = _parse_line(line)
        if event is None:
            damaged += 1
        else:
            events.append(event)
    events.sort(key=lambda e: e.at)
    return events, damaged


def _parse_line(line: str) -> CoverageEvent | None:
    try:
        entry = json.loads(line)
        event, at = entry["event"], parse_instant(entry["at"])
    except (ValueError, TypeError, KeyError):
        return None
    if event not in COVERING_EVENTS | ENDING_EVENTS:
        return None
    return CoverageEvent(at, event)


def replica_intervals(events: Iterable[CoverageEvent], heartbeat_s: float) -> list[Interval]:
    """The intervals one replica covered (the rule in the module's docstring), in order."""
    reach = timedelta(seconds=2 * heartbeat_s)
    intervals: list[Interval] = []
    for event in events:
        open_end = intervals[-1][1] if intervals else None
        if event.event in ENDING_EVENTS:
            if open_end is not None and open_end > event.at:
                intervals[-1] = (intervals[-1][0], event.at)
        elif open_end is not None and event.at <= open_end:
            intervals[-1] = (intervals[-1][0], max(open_end, event.at + reach))
        else:
            intervals.append((event.at, event.at + reach))
    return intervals


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Overlapping or touching intervals merged, in order."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clip(intervals: Iterable[Interval], since: datetime, until: datetime) -> list[Interval]:
    """The parts of ``intervals`` inside [since, until)."""
    clipped = [(max(start, since), min(end, until)) for start, end in intervals]
    return [(start, end) for start, end in clipped if start < end]


@dataclass
class Coverage:
    """Every replica's coverage log under one destination, read once."""

    heartbeat_s: float = HEARTBEAT_S
    replicas: dict[str, list[CoverageEvent]] = field(default_factory=dict)
    damaged: dict[str, int] = field(default_factory=dict)
    """Damaged lines (a partial last line of a killed writer, say) skipped, per replica."""

    @classmethod
    def read(cls, dest: Path, heartbeat_s: float = HEARTBEAT_S) -> Coverage:
        """The logs of ``<dest>/eddn/_replicas/*/coverage.jsonl``."""
        coverage = cls(heartbeat_s)
        for path in sorted((dest / REPLICAS_FOLDER).glob(f"*/{COVERAGE_FILE}")):
            replica = path.parent.name
            coverage.replicas[replica], damaged = read_events(path)
            if damaged:
                coverage.damaged[replica] = damaged
                log.warning("damaged coverage lines skipped", extra={"path": str(path),
                                                                    "lines": damaged})  # fmt: skip
        return coverage

    @property
    def gap_min_s(self) -> float:
        """Shorter uncovered intervals are not gaps: 2 * heartbeat."""
        return 2 * self.heartbeat_s

    def earliest(self) -> datetime | None:
        """The first event on record, None when there is none."""
        firsts = [events[0].at for events in self.replicas.values() if events]
        return min(firsts) if firsts else None

    def intervals(
        self,
        replica: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Interval]:
        """What ``replica`` (None: any replica) covered, inside [since, until) (until: now)."""
        names = list(self.replicas) if replica is None else [replica]
        covered = union(
            interval
            for name in names
            for interval in replica_intervals(self.replicas.get(name, []), self.heartbeat_s)
        )
        earliest = self.earliest()
        start = since or earliest or datetime.now(UTC)
        return clip(covered, start, until or datetime.now(UTC))

    def gaps(self, since: datetime | None = None, until: datetime | None = None) -> list[Gap]:
        """The intervals of [since, until) no replica covered, at least gap_min_s long."""
        since = since or self.earliest()
        until = until or datetime.now(UTC)
        if since is None or since >= until:
            return []
        edges = [since, *(t for interval in self.intervals(None, since, until) for t in interval)]
        edges.append(until)
        found = [
            Gap(a, b, (b - a).total_seconds()) for a, b in zip(edges[::2], edges[1::2], strict=True)
        ]
        return [gap for gap in found if gap.seconds >= self.gap_min_s]

    def covered_seconds(self, start: datetime, end: datetime) -> float:
        """Seconds of [start, end) that at least one replica covered."""
        return sum((b - a).total_seconds() for a, b in self.intervals(None, start, end))


def covered_intervals(
    dest: Path,
    replica: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    heartbeat_s: float = HEARTBEAT_S,
) -> list[Interval]:
    """The intervals ``replica`` (None: any replica) of ``dest`` covered, in [since, until)."""
    return Coverage.read(dest, heartbeat_s).intervals(replica, since, until)


def gaps(
    dest: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    heartbeat_s: float = HEARTBEAT_S,
) -> list[Gap]:
    """Every gap of ``dest`` in [since, until): since defaults to the first event, until to now."""
    return Coverage.read(dest, heartbeat_s).gaps(since, until)


def covered_seconds(
    dest: Path, hour_start: datetime, hour_end: datetime, *, heartbeat_s: float = HEARTBEAT_S
) -> float:
    """Seconds of [hour_start, hour_end) covered by any replica (for the merge's record)."""
    return Coverage.read(dest, heartbeat_s).covered_seconds(hour_start, hour_end)
