"""Per-host sliding windows that keep API requests to at most ``rate`` in any one-second window."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType


class RequestWindow:
    """At most ``rate`` requests in any 1 s window; ``burst`` of them may go back to back.

    A sliding-window log. A request holds its place in the window from the moment it is let
    through until one window after its answer began (``RequestSlot.answered``): the server saw
    it somewhere in between, so however long the request travelled, no window of the server's
    clock holds more than the limit. The limit is ``floor(rate)`` requests per second (a rate
    below 1 is one request per ``1/rate`` seconds). ``burst`` only spaces requests inside that
    bound: at most ``burst`` start in any ``burst/rate`` seconds (``burst=1``: evenly spaced),
    and a burst above the limit never lets a window exceed it.

    Thread-safe: the decision is taken under a lock, the waiting is done outside it (or on the
    condition while every place is held by a request still in flight).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.limit = max(1, math.floor(rate))
        self.window_s = max(1.0, self.limit / rate)
        self._burst = min(burst, self.limit)
        self._burst_span_s = self._burst / rate
        self._clock, self._sleep = clock, sleep
        self._answered: deque[float] = deque()  # when the answers of recent requests began
        self._starts: deque[float] = deque(maxlen=self._burst)  # when the latest requests went
        self._in_flight = 0
        self._paused_until = -math.inf
        self._changed = threading.Condition(threading.Lock())

    def acquire(self) -> RequestSlot:
        """Wait until a request may go; return its slot (release it with ``answered``)."""
        with self._changed:
            while True:
                now = self._clock()
                wait = self._wait_at(now)
                if wait == 0.0:
                    self._starts.append(now)
                    self._in_flight += 1
                    return RequestSlot(self)
                if wait is None:  # every place is held by a request in flight
                    self._changed.wait()
                    continue
                self._changed.release()
                try:
                    self._sleep(wait)
                finally:
                    self._changed.acquire()

    def hold_off(self, seconds: float) -> None:
        """Let no request go for ``seconds`` (the server asked for a pause, e.g. Retry-After)."""
        with self._changed:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _release(self) -> None:
        """A request in flight was answered: its place leaves the window one window from now."""
        with self._changed:
            self._in_flight -= 1
            self._answered.append(self._clock())
            self._changed.notify_all()

    def _wait_at(self, now: float) -> float | None:
        """Seconds until a request may go (0.0: now); None: until a request in flight answers."""
        while self._answered and self._answered[0] + self.window_s <= now:
            self._answered.popleft()
        waits = [self._paused_until - now]
        held = self._in_flight + len(self._answered)
        if held >= self.limit:
            expiring = held - self.limit  # this many answered places must leave the window first
            if expiring >= len(self._answered):
                return None
            waits.append(self._answered[expiring] + self.window_s - now)
        if len(self._starts) == self._burst:
            waits.append(self._starts[0] + self._burst_span_s - now)
        return max(0.0, *waits)


class RequestSlot:
    """One request's place in its host's window; ``answered()`` when its answer begins or fails.

    Used as a context manager, leaving the block counts as answered if it was not yet.
    """

    def __init__(self, window: RequestWindow) -> None:
        self._window: RequestWindow | None = window

    def answered(self) -> None:
        """The server has seen the request: its place frees one window from now. Idempotent."""
        window, self._window = self._window, None
        if window is not None:
            window._release()

    def __enter__(self) -> RequestSlot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.answered()


class HostRateLimiter:
    """One RequestWindow per host, all with the same rate and burst."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        RequestWindow(rate, burst)  # validates the arguments now, not at the first request
        self._rate, self._burst, self._clock, self._sleep = rate, burst, clock, sleep
        self._windows: dict[str, RequestWindow] = {}
        self._lock = threading.Lock()

    def window(self, host: str) -> RequestWindow:
        """The window of ``host`` (created on first use)."""
        with self._lock:
            if host not in self._windows:
                self._windows[host] = RequestWindow(
                    self._rate, self._burst, clock=self._clock, sleep=self._sleep
                )
            return self._windows[host]
