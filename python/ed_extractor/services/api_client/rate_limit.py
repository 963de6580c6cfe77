"""Token buckets that keep requests to each host under a rate (per second) with a burst."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; each request takes one.

    Thread-safe: a caller reserves its token under the lock and sleeps outside it, so concurrent
    callers queue up in order instead of all waking at once.
    """

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(
                f"need rate > 0 and burst >= 1, got rate={self.rate} burst={self.burst}"
            )
        self._tokens = float(self.burst)
        self._updated = self.clock()

    def acquire(self) -> float:
        """Take one token, waiting until it is there; return the seconds waited."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0  # reserved: a negative balance is the queue of waiting callers
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self.sleep(wait)
        return wait

    def hold_off(self, seconds: float) -> None:
        """Hand out no token for ``seconds`` (the server asked for a pause, e.g. Retry-After)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens = min(self._tokens, -seconds * self.rate + 1.0)


class HostRateLimiter:
    """One TokenBucket per host, all with the same rate and burst."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        TokenBucket(rate, burst)  # validates the arguments now, not at the first request
        self._rate, self._burst, self._clock, self._sleep = rate, burst, clock, sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, host: str) -> TokenBucket:
        """The bucket of ``host`` (created on first use)."""
        with self._lock:
            if host not in self._buckets:
                self._buckets[host] = TokenBucket(
                    self._rate, self._burst, clock=self._clock, sleep=self._sleep
                )
            return self._buckets[host]
