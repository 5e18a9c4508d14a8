"""Engine.stream and Context overrides: accounting as for generate, cache, cancellation, budgets."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine, ResponseCache
from thinktank.engine.engine import Overrides
from thinktank.exceptions import BackendStatusError, BudgetExceeded
from thinktank.types import GenerationRequest
from thinktank.usage import Usage

from .conftest import Gate, WordStreamBackend

REQ = GenerationRequest.from_prompt("say three words", "m", temperature=0.7, seed=5)


async def collect(engine: Engine, ctx, request=REQ) -> list[str]:
    return [d async for d in engine.stream(request, ctx)]


async def test_stream_yields_deltas_and_accounts_like_generate():
    streamed = Engine({"m": WordStreamBackend(lambda r, i: "one two three")})
    ctx = streamed.context()
    deltas = await collect(streamed, ctx)
    assert deltas == ["one ", "two ", "three"]

    plain = Engine({"m": ScriptedBackend(lambda r, i: "one two three")})
    ctx2 = plain.context()
    await ctx2.generate(REQ)
    (call,), (call2,) = ctx.node.calls, ctx2.node.calls
    assert (call.status, call.sample_indices, call.finish_reasons) == ("ok", [0], ["stop"])
    assert call.usage.prompt_tokens == call2.usage.prompt_tokens == 3
    assert call.usage.completion_tokens == call2.usage.completion_tokens == 3
    assert ctx.usage.calls == 1 and ctx.budget.spent.total_tokens == 6


async def test_base_backend_default_streams_whole_text_once():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "all at once")})
    ctx = engine.context()
    assert await collect(engine, ctx) == ["all at once"]
    assert ctx.usage.completion_tokens == 3


async def test_stream_uses_and_fills_the_cache(tmp_path):
    backend = WordStreamBackend(lambda r, i: "cached words here")
    engine = Engine({"m": backend}, cache=ResponseCache(tmp_path / "c.db"))
    await collect(engine, engine.context())
    ctx = engine.context()
    assert await collect(engine, ctx) == ["cached words here"]  # the hit comes whole
    assert len(backend.requests) == 1
    assert ctx.node.calls[0].status == "cached" and ctx.usage.cache_hits == 1 and ctx.usage.total_tokens == 0
    # and a plain generate of the same request is served by what the stream cached
    assert (await engine.context().generate(REQ))[0].cached


async def test_closing_the_stream_early_cancels_the_backend_call():
    gate = Gate()
    backend = ScriptedBackend(gate.handler)
    engine = Engine({"m": backend})
    ctx = engine.context()

    async def consume() -> None:
        await collect(engine, ctx)

    task = asyncio.create_task(consume())
    await asyncio.to_thread(gate.started.wait, 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert gate.cancelled.is_set()
    (call,) = ctx.node.calls
    assert call.status == "cancelled" and ctx.usage.cancelled_calls == 1 and ctx.usage.calls == 0


async def test_consumer_stopping_after_first_delta_records_cancelled():
    engine = Engine({"m": WordStreamBackend(lambda r, i: "a b c d")})
    ctx = engine.context()
    async with contextlib.aclosing(engine.stream(REQ, ctx)) as deltas:
        async for _ in deltas:
            break
    assert ctx.node.calls[0].status == "cancelled"


async def test_token_budget_clamps_and_then_refuses():
    backend = WordStreamBackend(lambda r, i: "x y")
    engine = Engine({"m": backend})
    ctx = engine.context(Budget(max_tokens=10))
    await collect(engine, ctx, REQ.with_(max_tokens=512))
    assert backend.requests[0].max_tokens == 10  # clamped to what the budget has left
    ctx.budget.record(Usage(prompt_tokens=100))
    with pytest.raises(BudgetExceeded):
        await collect(engine, ctx)


async def test_wall_budget_stops_a_slow_stream():
    gate = Gate()
    engine = Engine({"m": ScriptedBackend(gate.handler)})
    ctx = engine.context(Budget(max_wall_s=0.1))
    with pytest.raises(BudgetExceeded, match="wall-time"):
        await collect(engine, ctx)
    assert ctx.node.calls[0].status == "cancelled" and gate.cancelled.is_set()


async def test_backend_error_is_recorded_and_raised():
    def fail(request, i):
        raise BackendStatusError("boom", 500)

    engine = Engine({"m": WordStreamBackend(fail)})
    ctx = engine.context()
    with pytest.raises(BackendStatusError):
        await collect(engine, ctx)
    assert ctx.node.calls[0].status == "error" and "boom" in ctx.node.calls[0].error


async def test_stream_refuses_several_samples():
    engine = Engine({"m": WordStreamBackend(lambda r, i: "x")})
    with pytest.raises(ValueError, match="one sample"):
        await collect(engine, engine.context(), REQ.with_(n=2))


@pytest.mark.parametrize("streaming", [False, True])
async def test_overrides_reach_every_call_and_child_contexts(streaming):
    backend = WordStreamBackend(lambda r, i: "ok")
    engine = Engine({"m": backend})
    overrides = Overrides(max_tokens=7, temperature=0.0, top_p=0.5, seed=42, stop=("END",))
    ctx = engine.context(overrides=overrides).child("node")
    request = REQ.with_(max_tokens=100, stop=("\n\n",))
    if streaming:
        await collect(engine, ctx, request)
    else:
        await ctx.generate(request)
    (sent,) = backend.requests
    assert (sent.max_tokens, sent.temperature, sent.top_p, sent.seed) == (7, 0.0, 0.5, 42)
    assert sent.stop == ("\n\n", "END")  # added to the node's own


def test_overrides_cap_never_raises_a_limit_and_omitted_fields_keep_the_request():
    request = REQ.with_(max_tokens=16)
    assert Overrides(max_tokens=1000).apply(request) is request
    assert Overrides().apply(request) is request
    assert Overrides(temperature=1.5).apply(request).with_(temperature=0.7) == request
