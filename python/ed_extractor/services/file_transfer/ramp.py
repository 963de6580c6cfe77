"""How many connections ``--connections auto`` runs: more only while they pay (measured throughput).

A download starts with ``RampPolicy.start`` connections; every step is measured (after a warm-up)
as the aggregate rate of the bytes written. The count is multiplied by ``step_factor`` while one
connection's share stays below ``fast_connection`` (a per-connection limit, as CDNs set, is what
several connections overcome) and each step raised the aggregate rate by ``min_gain``; a step that
did not is taken back, and the ramp stops there for the rest of the download. A verdict to stop is
drawn only when a second window agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MB: Final = 1_000_000


@dataclass(frozen=True)
class RampPolicy:
    """The thresholds of the ramp (the defaults are what ``auto`` uses)."""

    start: int = 1  # connections at the start
    step_factor: int = 2  # each step multiplies the connections by this
    fast_connection: float = 64 * MB  # bytes/s: one connection this fast is not rate-limited
    min_gain: float = 1.25  # a step must raise the aggregate rate by this factor to be kept
    warmup_s: float = 0.15  # after a step, bytes of this long are not measured (connect, request)
    measure_s: float = 0.35  # each step's rate is measured over at least this long
    tick_s: float = 0.05  # how often the controller looks while the ramp measures


@dataclass(frozen=True)
class RampStep:
    """One measured step: ``connections`` ran at ``rate`` bytes/s (aggregate)."""

    connections: int
    rate: float


class ConnectionRamp:
    """The ramp's state for one download: feed it the bytes written, it says how many to run.

    Not thread-safe: one controller loop calls ``observe``.
    """

    def __init__(self, policy: RampPolicy, most: int, now: float) -> None:
        """``most``: the connections the ramp may reach; ``now``: when the download starts."""
        self._policy = policy
        self._most = max(1, most)
        self.connections = min(max(1, policy.start), self._most)  # how many should run now
        self.peak = self.connections  # the most that ran at once
        self.steps: list[RampStep] = []  # every measured window
        self.reason: str | None = None  # why the ramp stopped; None while it still measures
        self._step_at = now
        self._mark: tuple[float, int] | None = None  # (time, bytes) where the measure began
        self._baseline: RampStep | None = None  # the count before the last step, as measured
        self._second_look = False  # the window being measured checks the last one's verdict

    @property
    def tick_s(self) -> float:
        """How often the ramp wants to be fed while it measures."""
        return self._policy.tick_s

    @property
    def settled(self) -> bool:
        """True once the ramp has stopped: the count no longer changes."""
        return self.reason is not None

    def observe(self, now: float, received: int) -> int:
        """``received`` bytes were written by ``now``: the connections that should run from now."""
        if self.settled:
            return self.connections
        policy = self._policy
        if self._mark is None:
            if now - self._step_at >= policy.warmup_s:
                self._mark = (now, received)
            return self.connections
        began, base = self._mark
        if now - began >= policy.measure_s:
            self._decide((received - base) / (now - began), now, received)
        return self.connections

    def _decide(self, rate: float, now: float, received: int) -> None:
        """Multiply, keep or take back the connections after a window measured ``rate``.

        A verdict drawn from the rate (fast enough, or too little gained) needs a second window
        that agrees: one window can mislead (a server's burst at a request's start, a busy core).
        """
        policy, count = self._policy, self.connections
        self.steps.append(RampStep(count, rate))
        base = self._baseline
        short = base is not None and rate < base.rate * policy.min_gain
        fast = rate / count >= policy.fast_connection
        if (short or fast) and not self._second_look:
            self._second_look = True
            self._mark = (now, received)
            return
        self._second_look = False
        if short and base is not None:
            self.connections = base.connections
            self.reason = (
                f"{count} connections gained {rate / max(base.rate, 1.0):.2f}x over "
                f"{base.connections} (less than {policy.min_gain:g}x): back to {base.connections}"
            )
        elif fast:
            self.reason = (
                f"{rate / count / MB:.0f} MB/s per connection is fast "
                f"(>= {policy.fast_connection / MB:g} MB/s)"
            )
        elif count >= self._most:
            self.reason = f"reached the most connections ({self._most})"
        else:
            self._baseline = RampStep(count, rate)
            self.connections = min(self._most, count * max(2, policy.step_factor))
            self.peak = max(self.peak, self.connections)
            self._step_at, self._mark = now, None

    def history(self) -> list[str]:
        """The measured steps, for the log: ``"2 connection(s): 41.9 MB/s"``."""
        return [
            f"{step.connections} connection(s): {step.rate / MB:.1f} MB/s" for step in self.steps
        ]

    def finish(self) -> None:
        """The download ended: name why, if the ramp had not stopped yet."""
        if self.reason is None:
            count = self.connections
            self.reason = f"the download ended while the ramp measured {count} connection(s)"
