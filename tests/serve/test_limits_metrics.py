"""KeyLimiter (per-key concurrency + queue) and the Prometheus exposition (prometheus-client, a registry per app)."""

from __future__ import annotations

import asyncio
import re

import pytest

from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.serve.errors import ServeError
from thinktank.serve.limits import KeyLimiter
from thinktank.serve.metrics import Metrics
from thinktank.usage import Usage

from .conftest import WordStreamBackend, numbered, serving


async def test_limiter_runs_n_queues_q_and_refuses_the_rest():
    limiter = KeyLimiter(max_concurrent=2, max_queue=1)
    release = asyncio.Event()
    running = 0
    peak = 0

    async def request() -> None:
        nonlocal running, peak
        async with limiter.slot("k"):
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(request()) for _ in range(3)]
    await asyncio.sleep(0)  # let the three reach the limiter
    assert (limiter.in_flight(), limiter.queued()) == (2, 1)
    with pytest.raises(ServeError) as info:
        async with limiter.slot("k"):
            pass
    assert info.value.status_code == 429 and info.value.code == "queue_full" and info.value.retry_after >= 1
    async with limiter.slot("other key"):  # keys do not share a lane
        pass
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and limiter.in_flight() == 0 and limiter._lanes == {}  # idle lanes are dropped


async def test_a_cancelled_waiter_leaves_the_queue():
    limiter = KeyLimiter(max_concurrent=1, max_queue=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with limiter.slot("k"):
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert limiter.queued() == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.queued() == 0
    hold.set()
    await first
    assert limiter._lanes == {}


def test_limiter_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        KeyLimiter(0, 1)


def parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_exposition_counts_requests_runs_and_errors():
    metrics = Metrics()
    metrics.observe_request("/v1/chat/completions", 200, 0.2)
    metrics.observe_request("/v1/chat/completions", 200, 3.0)
    metrics.observe_request("/v1/chat/completions", 429, 0.001)
    root = TraceNode("q")
    node = root.child("gen")
    node.calls += [
        CallRecord("m", "b", [0], Usage(prompt_tokens=5, completion_tokens=7, calls=1, cost_usd=0.25), "ok", 0, 0),
        CallRecord("m", "cache", [1], Usage(cache_hits=1, saved_tokens=12), "cached", 0, 0),
        CallRecord("m", "b", [2], Usage(), "error", 0, 0, error="BackendUnreachable: down"),
    ]
    metrics.observe_run("arch", root)
    text = metrics.render()
    assert all(
        re.match(r"^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [0-9.e+-]+|\w+\{[^}]*\} \+Inf)$", line) for line in text.splitlines()
    )
    v = parse(text)
    assert v['thinktank_requests_total{route="/v1/chat/completions",status="200"}'] == 2
    assert v['thinktank_requests_total{route="/v1/chat/completions",status="429"}'] == 1
    assert v['thinktank_request_duration_seconds_bucket{le="0.25",route="/v1/chat/completions"}'] == 2
    assert v['thinktank_request_duration_seconds_bucket{le="+Inf",route="/v1/chat/completions"}'] == 3
    assert v['thinktank_request_duration_seconds_count{route="/v1/chat/completions"}'] == 3
    assert v['thinktank_tokens_total{architecture="arch",kind="completion"}'] == 7
    assert v['thinktank_tokens_total{architecture="arch",kind="prompt"}'] == 5
    assert v['thinktank_cache_hits_total{architecture="arch"}'] == 1
    assert v['thinktank_cost_usd_total{architecture="arch"}'] == 0.25
    assert v['thinktank_backend_errors_total{architecture="arch",model="m"}'] == 1
    assert v['thinktank_backend_calls_total{architecture="arch",status="cached"}'] == 1
    assert v["thinktank_requests_in_flight"] == 0


def test_two_metrics_count_apart():
    first, second = Metrics(), Metrics()
    first.observe_request("/health", 200, 0.01)
    assert parse(first.render())['thinktank_requests_total{route="/health",status="200"}'] == 1
    assert "thinktank_requests_total{" not in second.render() and first.registry is not second.registry


def test_two_apps_in_one_process_do_not_share_counters():
    with serving(WordStreamBackend(numbered)) as one, serving(WordStreamBackend(numbered)) as other:
        one.client().chat.completions.create(model="single", messages=[{"role": "user", "content": "q"}])
        with one.http() as http:
            counted = parse(http.get("/metrics").text)
        with other.http() as http:
            untouched = parse(http.get("/metrics").text)
    assert counted['thinktank_requests_total{route="/v1/chat/completions",status="200"}'] == 1
    assert counted['thinktank_tokens_total{architecture="single",kind="completion"}'] == 2
    assert not any(key.startswith(('thinktank_requests_total{route="/v1/', "thinktank_tokens_total")) for key in untouched)
