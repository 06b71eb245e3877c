"""The one retry layer (tenacity) of every Braze request: which errors are retried, how long to wait, when to
give up. Only transient errors are retried (429 after Braze's window, 5xx, timeouts, broken connections),
bounded in failed attempts and in total time; everything else is final at once.

Override points (pass your own to `braze_retrying`, or wrap it):
- `stop_after_failed_attempts(n)`: give up after n failures (429s do not count: they ask us to wait).
- `stop_before_deadline(seconds, clock)`: never start a try after the time budget.
- `wait_for_braze(limiter, initial)`: until the limiter's pause ends after a 429, else exponential backoff
  with jitter (`BACKOFF_INITIAL` doubling to `BACKOFF_MAX`).
- `with_retries(retrying, sleep, attempt, *args)`: the loop that drives them with an injected async sleep.
The classification of answers into retried or final errors is `outcomes.classify` (the Singer SDK's
`validate_response`).
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from connectors.braze.outcomes import BrazeThrottled, BrazeTransientError
from connectors.braze.ratelimit import Clock, RateLimiter, Sleep

# Exponential backoff for 5xx/timeouts: 1 s, 2 s, 4 s ... capped, plus up to 1 s of jitter so that
# concurrent senders do not come back in lockstep.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
BACKOFF_JITTER = 1.0


class _Attempts(Protocol):
    """What the retry conditions read from the object being retried."""

    failures: int
    started: float


class stop_after_failed_attempts(stop_base):
    """tenacity's stop_after_attempt counting failures only: a 429 asks us to wait, not to give up."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        attempts: _Attempts = retry_state.args[0]
        return attempts.failures >= self.max_attempts


class stop_before_deadline(stop_base):
    """tenacity's stop_before_delay on an injected clock: never start a try after the time budget."""

    def __init__(self, max_seconds: float, clock: Clock) -> None:
        self.max_seconds = max_seconds
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        attempts: _Attempts = retry_state.args[0]
        elapsed = self.clock() - attempts.started
        return elapsed + retry_state.upcoming_sleep >= self.max_seconds


class wait_for_braze(wait_base):
    """429: until the limiter's pause ends (Braze's window); otherwise exponential backoff with jitter."""

    def __init__(self, limiter: RateLimiter, initial: float = BACKOFF_INITIAL) -> None:
        self.limiter = limiter
        self.initial = initial

    def __call__(self, retry_state: RetryCallState) -> float:
        if isinstance(retry_state.outcome.exception(), BrazeThrottled):
            return self.limiter.pause_remaining()
        attempts: _Attempts = retry_state.args[0]
        backoff = self.initial * 2 ** max(0, attempts.failures - 1)
        return min(BACKOFF_MAX, backoff) + random.uniform(0, min(BACKOFF_JITTER, self.initial))


def braze_retrying(
    *, limiter: RateLimiter, max_attempts: int, max_seconds: float, clock: Clock,
    stopped: threading.Event, before_sleep: Callable[[RetryCallState], None] | None = None,
    backoff: float = BACKOFF_INITIAL,
) -> Retrying:
    """The one retry layer: transient Braze errors only, bounded in attempts and in total time.

    Its decisions are driven by `with_retries`, which sleeps with the injected async sleep.
    """
    return Retrying(
        retry=retry_if_exception_type(BrazeTransientError),
        stop=(
            stop_after_failed_attempts(max_attempts)
            | stop_before_deadline(max_seconds, clock)
            | stop_when_event_set(stopped)
        ),
        wait=wait_for_braze(limiter, backoff),
        before_sleep=before_sleep,
        reraise=True,
    )


async def with_retries(retrying: Retrying, sleep: Sleep, attempt: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run `attempt(*args)`; after a failure, tenacity's `Retrying.iter` decides, and we sleep with `sleep`.

    This is AsyncRetrying's loop with two savings: the first try runs before any tenacity state exists
    (a success costs nothing, where AsyncRetrying costs ~50 µs), and decisions are not wrapped in
    coroutines. Cancellation passes through untouched. `args[0]` is what the conditions read (`_Attempts`).
    """
    try:
        return await attempt(*args)
    except Exception:  # noqa: BLE001 - handed to tenacity, which re-raises all but transient errors
        failure = sys.exc_info()
    retrying = retrying.copy()
    retrying.begin()
    state = RetryCallState(retrying, fn=None, args=args, kwargs={})
    state.set_exception(failure)
    while True:
        action = retrying.iter(state)
        if isinstance(action, DoAttempt):
            try:
                state.set_result(await attempt(*args))
            except Exception:  # noqa: BLE001 - as above
                state.set_exception(sys.exc_info())
        elif isinstance(action, DoSleep):
            state.prepare_for_next_attempt()
            await sleep(action)
        else:
            return action
