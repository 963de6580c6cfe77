"""The retry policy (tenacity): which failures are tried again, and how long to wait in between."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from ed_extractor.errors import TransferError
from ed_extractor.settings import (
    RETRY_ATTEMPTS,
    RETRY_INITIAL_WAIT_S,
    RETRY_MAX_WAIT_S,
    RETRY_TOTAL_S,
)

if TYPE_CHECKING:
    from ed_extractor.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on trying one source again: attempts, pauses, total time, the run's deadline."""

    attempts: int = RETRY_ATTEMPTS
    initial_wait_s: float = RETRY_INITIAL_WAIT_S
    max_wait_s: float = RETRY_MAX_WAIT_S
    total_s: float = RETRY_TOTAL_S
    deadline: float | None = None  # time.monotonic() of the run's deadline

    @classmethod
    def from_settings(cls, settings: Settings, deadline: float | None = None) -> RetryPolicy:
        """The policy the run's settings describe (``retry_*``), ending at ``deadline``."""
        return cls(
            attempts=settings.retry_attempts,
            initial_wait_s=settings.retry_initial_wait_s,
            max_wait_s=settings.retry_max_wait_s,
            total_s=settings.retry_total_s,
            deadline=deadline,
        )

    def retrying(self) -> Retrying:
        """A tenacity controller for one source under this policy."""
        backoff = wait_exponential_jitter(
            multiplier=self.initial_wait_s, max=self.max_wait_s, jitter=self.initial_wait_s
        )

        def wait(state: RetryCallState) -> float:
            """Exponential backoff with jitter, or the server's Retry-After when that is longer."""
            pause = float(backoff(state))
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, TransferError) and error.retry_after is not None:
                pause = max(pause, min(error.retry_after, self.max_wait_s))
            if self.deadline is not None:
                pause = min(pause, max(0.0, self.deadline - time.monotonic()))
            return pause

        def announce(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "retrying after %s", error,
                extra={"attempt": state.attempt_number, "wait_s": round(state.upcoming_sleep, 2)},
            )  # fmt: skip

        return Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_any(
                stop_after_attempt(self.attempts),
                stop_after_delay(self.total_s),
                _StopAtDeadline(self.deadline),
            ),
            wait=wait,
            before_sleep=announce,
            reraise=True,
        )


class _StopAtDeadline(stop_base):
    """Stop retrying once the run's deadline has passed."""

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline


def is_retryable(error: BaseException) -> bool:
    """Connection errors, timeouts, bodies cut short, 408, 429 and 5xx are worth another try."""
    return isinstance(error, TransferError) and error.retryable
