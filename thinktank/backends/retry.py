"""The one retry policy for thinktank's HTTP calls, on tenacity.

    policy = RetryPolicy(max_retries=3)
    data = await policy.call(lambda: post_once(payload))

Whether a failure may be tried again is decided only by `thinktank.exceptions.is_retryable`;
this module decides only how often and how long to wait. The wait is full jitter on an
exponential ceiling (so many clients that failed together do not come back together), or
the server's `Retry-After` when it sent one, both capped by `backoff_max_s`.
Written against tenacity 8.2.3's API (`AsyncRetrying` iterated with `async for`, `stop_after_attempt`,
`retry_if_exception`), the oldest release pyproject allows; 9.x runs it the same.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from thinktank.exceptions import BackendStatusError, is_retryable

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry a retryable failure, and how long to wait before each retry."""

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    #: how a wait is spent; a test passes a recording one (tenacity may compute a delay it then does not sleep)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)

    def delay(self, attempt: int, exc: BaseException) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 for the first call)."""
        if isinstance(exc, BackendStatusError) and exc.retry_after is not None:
            return min(float(exc.retry_after), self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return random.uniform(0, ceiling)  # full jitter

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        assert exc is not None, "tenacity waits only after a failed attempt here"
        return self.delay(state.attempt_number, exc)  # tenacity's attempt 1 is the call's second attempt

    async def call(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Await `attempt()` until it succeeds, fails for good, or the retries are spent; the last error is raised.

        The first attempt is awaited directly and tenacity runs only the retries: building its machinery costs
        ~15 us of CPU a call, which the loopback benchmarks would see on every call that needs no retry.
        """
        try:
            return await attempt()
        except Exception as exc:
            if self.max_retries < 1 or not is_retryable(exc):
                raise
            first_failure = exc
        await self.sleep(self.delay(0, first_failure))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries),
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        # The `async for` form, not `await retrying(fn)`: tenacity 9 awaits only what it sees as a coroutine
        # function, and 8.2.3 awaits whatever it is given; a lambda returning an awaitable is neither to both.
        async for trial in retrying:
            with trial:
                return await attempt()
        raise AssertionError("unreachable: with reraise=True tenacity either returns or raises")
