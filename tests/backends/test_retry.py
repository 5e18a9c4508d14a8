"""The one retry policy: attempts, what is retried (only what `is_retryable` allows), and the waits."""

from __future__ import annotations

import pytest

from thinktank.backends.retry import RetryPolicy
from thinktank.exceptions import BackendStatusError, BackendUnreachable, ContextLengthExceeded


def recording_policy(**options: float) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return RetryPolicy(sleep=sleep, **options), slept  # type: ignore[arg-type]


def failing(*errors: Exception) -> tuple[list[int], object]:
    """An attempt that raises `errors` in turn, then answers "ok"; and the list counting its calls."""
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return calls, attempt


async def test_retryable_failures_are_retried_until_success() -> None:
    policy, slept = recording_policy(max_retries=3, backoff_base_s=0.01)
    calls, attempt = failing(BackendUnreachable("down"), BackendStatusError("busy", 503))
    assert await policy.call(attempt) == "ok"  # type: ignore[arg-type]
    assert len(calls) == 3 and len(slept) == 2
    assert all(0 <= s <= 0.01 * 2**i for i, s in enumerate(slept))


async def test_the_last_error_is_raised_after_max_retries() -> None:
    policy, slept = recording_policy(max_retries=2, backoff_base_s=0.0)
    errors = [BackendStatusError(f"busy {i}", 503) for i in range(5)]
    calls, attempt = failing(*errors)
    with pytest.raises(BackendStatusError, match="busy 2"):
        await policy.call(attempt)  # type: ignore[arg-type]
    assert len(calls) == 3 and len(slept) == 2


@pytest.mark.parametrize(
    "error", [ContextLengthExceeded("too long", 400), BackendStatusError("no such model", 404), ValueError("a bug")]
)
async def test_what_is_retryable_is_not_retried(error: Exception) -> None:
    policy, slept = recording_policy()
    calls, attempt = failing(error)
    with pytest.raises(type(error)):
        await policy.call(attempt)  # type: ignore[arg-type]
    assert len(calls) == 1 and slept == []


async def test_retry_after_is_honoured_and_capped() -> None:
    policy, slept = recording_policy(backoff_max_s=5.0)
    _, attempt = failing(BackendStatusError("slow down", 429, retry_after=0.25), BackendStatusError("later", 503, retry_after=60))
    assert await policy.call(attempt) == "ok"  # type: ignore[arg-type]
    assert slept == [0.25, 5.0]


def test_delay_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=20.0)
    draws = [policy.delay(2, BackendUnreachable("down")) for _ in range(300)]
    assert all(0 <= d <= 4.0 for d in draws) and max(draws) - min(draws) > 2.0
