import asyncio

import pytest

from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine, ResponseCache
from thinktank.exceptions import BudgetExceeded, CacheError, UnknownModelError
from thinktank.types import BackendResponse, Choice, GenerationRequest
from thinktank.usage import Price, PriceTable


def echo_index(request, i):
    return f"sample {i} seed {request.seed}"


async def test_fan_out_returns_n_samples_in_order_with_usage():
    backend = ScriptedBackend(echo_index, max_concurrency=3, delay_s=0.01)
    engine = Engine({"m": backend})
    ctx = engine.context()
    out = await ctx.generate(GenerationRequest.from_prompt("two words", "m", n=7, seed=100))
    assert [c.sample_index for c in out] == list(range(7))
    assert [c.text.split()[-1] for c in out] == [str(100 + i) for i in range(7)]
    assert backend.peak_in_flight == 3  # the per-backend limit held
    assert ctx.usage.calls == 7
    assert ctx.usage.prompt_tokens == 7 * 2
    assert ctx.usage.completion_tokens == 7 * 4


async def test_native_n_uses_one_call():
    backend = ScriptedBackend(echo_index, supports_native_n=True)
    engine = Engine({"m": backend})
    ctx = engine.context()
    out = await ctx.generate(GenerationRequest.from_prompt("p", "m", n=4))
    assert len(out) == 4 and len(backend.requests) == 1 and backend.requests[0].n == 4
    assert ctx.usage.calls == 1 and ctx.usage.prompt_tokens == 1


async def test_unknown_model_lists_known():
    engine = Engine({"a": ScriptedBackend(echo_index), "b": ScriptedBackend(echo_index)})
    with pytest.raises(UnknownModelError, match="known models: a, b"):
        await engine.context().generate(GenerationRequest.from_prompt("p", "zzz"))


async def test_price_table_costs():
    engine = Engine(
        {"m": ScriptedBackend(lambda r, i: "one two three")},
        prices=PriceTable(prices={"m": Price(prompt_per_mtok=1e6, completion_per_mtok=2e6)}),
    )
    ctx = engine.context()
    await ctx.generate(GenerationRequest.from_prompt("a b", "m"))
    assert ctx.usage.cost_usd == pytest.approx(2 * 1 + 3 * 2)


async def test_cache_hit_marks_saved_not_spent(tmp_path):
    backend = ScriptedBackend(echo_index)
    cache = ResponseCache(tmp_path / "c.db")
    engine = Engine({"m": backend}, cache=cache)
    req = GenerationRequest.from_prompt("p q", "m", n=4, temperature=0.8)
    first = await engine.context().generate(req)
    ctx = engine.context()
    second = await ctx.generate(req.with_(n=6))
    assert [c.text for c in second[:4]] == [c.text for c in first]
    assert [c.cached for c in second] == [True] * 4 + [False] * 2
    assert ctx.usage.calls == 2 and ctx.usage.cache_hits == 4
    assert ctx.usage.saved_tokens == sum(c.usage.total_tokens for c in first)
    assert len(backend.requests) == 6
    # survives a restart of the process: a new cache object on the same file
    cache.close()
    engine2 = Engine({"m": backend}, cache=ResponseCache(tmp_path / "c.db"))
    third = await engine2.context().generate(req)
    assert all(c.cached for c in third) and len(backend.requests) == 6
    # disabled per call context
    await engine2.context(use_cache=False).generate(req)
    assert len(backend.requests) == 10


async def test_single_flight_coalesces_concurrent_identical_misses(tmp_path):
    backend = ScriptedBackend(echo_index, delay_s=0.05)
    engine = Engine({"m": backend}, cache=ResponseCache(tmp_path / "c.db"))
    req = GenerationRequest.from_prompt("p", "m", n=2)
    results = await asyncio.gather(*(engine.context().generate(req) for _ in range(5)))
    assert len(backend.requests) == 2
    assert all([c.text for c in r] == [c.text for c in results[0]] for r in results)


async def leader_and_follower(tmp_path, delay_s):
    """Two identical concurrent misses: the second waits on the first's call (single flight)."""
    backend = ScriptedBackend(echo_index, delay_s=delay_s)
    engine = Engine({"m": backend}, cache=ResponseCache(tmp_path / "c.db"))
    req = GenerationRequest.from_prompt("p", "m", n=1)
    leader = asyncio.create_task(engine.context().generate(req))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(engine.context().generate(req))
    await asyncio.sleep(0.01)
    return backend, engine, leader, follower


async def test_cancelling_leader_and_follower_makes_no_new_call(tmp_path):
    """A follower retries only when the leader gave up alone, not when both were cancelled."""
    backend, engine, leader, follower = await leader_and_follower(tmp_path, delay_s=5.0)
    leader.cancel()
    follower.cancel()
    results = await asyncio.gather(leader, follower, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert len(backend.requests) == 1 and engine._in_flight == {}


async def test_follower_retries_when_only_the_leader_gave_up(tmp_path):
    backend, engine, leader, follower = await leader_and_follower(tmp_path, delay_s=0.2)
    leader.cancel()
    (answer,) = await follower
    assert not answer.cached and len(backend.requests) == 2
    (again,) = await engine.context().generate(GenerationRequest.from_prompt("p", "m", n=1))
    assert again.cached and again.text == answer.text and len(backend.requests) == 2  # the follower's sample was cached


async def test_corrupt_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="unreadable"):
        ResponseCache(path)


async def test_token_budget_stops_and_reports_spent():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "a b c d e")})
    ctx = engine.context(Budget(max_tokens=14))
    await ctx.generate(GenerationRequest.from_prompt("x", "m"))  # 6 tokens
    await ctx.generate(GenerationRequest.from_prompt("x", "m"))  # 12 tokens
    with pytest.raises(BudgetExceeded) as info:
        await ctx.generate(GenerationRequest.from_prompt("x", "m", n=2))
    assert info.value.spent.total_tokens >= 14


async def test_call_budget_and_wall_budget():
    engine = Engine({"m": ScriptedBackend(echo_index, delay_s=0.5)})
    ctx = engine.context(Budget(max_wall_s=0.1))
    with pytest.raises(BudgetExceeded, match="wall-time"):
        await ctx.generate(GenerationRequest.from_prompt("x", "m"))
    assert ctx.usage.cancelled_calls == 1


async def test_cancellation_cancels_outstanding_calls():
    started = asyncio.Event()

    async def slow(request, i):
        started.set()
        await asyncio.sleep(10)
        return "never"

    backend = ScriptedBackend(slow, max_concurrency=4)
    engine = Engine({"m": backend})
    ctx = engine.context()
    task = asyncio.create_task(ctx.generate(GenerationRequest.from_prompt("x", "m", n=4)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.in_flight == 0
    assert [c.status for c in ctx.node.calls] == ["cancelled"] * 4


async def test_usage_rolls_up_the_tree():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "x y")})
    ctx = engine.context()
    a, b = ctx.child("a"), ctx.child("b")
    await a.generate(GenerationRequest.from_prompt("p", "m", n=2))
    await b.child("b1").generate(GenerationRequest.from_prompt("p", "m", n=3))
    assert a.usage.calls == 2 and b.usage.calls == 3 and ctx.usage.calls == 5
    assert ctx.usage.completion_tokens == 10


class OneChoiceBackend(ScriptedBackend):
    """A native-n server that ignores n."""

    def __init__(self):
        super().__init__(echo_index, supports_native_n=True)

    async def generate(self, request):
        return await super().generate(request.with_(n=1))


async def test_backend_returning_too_few_choices_is_a_backend_error(tmp_path):
    from thinktank.exceptions import BackendError

    engine = Engine({"m": OneChoiceBackend()}, cache=ResponseCache(tmp_path / "c.db"))
    with pytest.raises(BackendError, match="asked for 3 choices, got 1"):
        await engine.context().generate(GenerationRequest.from_prompt("p", "m", n=3))
    assert engine._in_flight == {}  # no single-flight waiter left hanging


def test_price_table_loads_from_yaml(tmp_path):
    from thinktank.exceptions import ConfigError

    path = tmp_path / "prices.yaml"
    path.write_text("gpt-x: {prompt_per_mtok: 1.0, completion_per_mtok: 4.0}\nlocal: {completion_per_mtok: 0.1}\n")
    table = PriceTable.load(path)
    assert table.cost("gpt-x", 1_000_000, 500_000) == pytest.approx(3.0)
    assert table.cost("local", 10, 1_000_000) == pytest.approx(0.1)
    assert table.cost("unknown", 10, 10) == 0.0
    path.write_text("gpt-x: {prompt_per_mtok: -1}\n")
    with pytest.raises(ConfigError, match="malformed"):
        PriceTable.load(path)


class SeededNativeBackend(ScriptedBackend):
    """Like llama-server: one call with seed s and n choices returns the samples of seeds s, s+1, …"""

    def __init__(self, max_n_per_call: int, slots: int = 8) -> None:
        super().__init__(
            lambda request, i: "",
            max_concurrency=slots,
            supports_native_n=True,
            seeded_native_n=True,
            max_n_per_call=max_n_per_call,
        )

    async def generate(self, request):
        self.requests.append(request)
        choices = [Choice(f"seed {(request.seed or 0) + j}", "stop", 2) for j in range(request.n)]
        return BackendResponse(choices=choices, prompt_tokens=5, latency_s=0.0, model=request.model)


async def test_seeded_samples_share_calls_of_consecutive_seeds(tmp_path):
    backend = SeededNativeBackend(max_n_per_call=3)
    cache = ResponseCache(tmp_path / "c.sqlite")
    engine = Engine({"m": backend}, cache=cache)
    request = GenerationRequest.from_prompt("p", "m", n=8, temperature=0.8, seed=10)
    await engine.generate(request.with_(n=1, seed=14), engine.context())  # sample 4 is now cached
    backend.requests.clear()
    ctx = engine.context()
    out = await engine.generate(request, ctx)
    assert [c.text for c in out] == [f"seed {10 + i}" for i in range(8)]
    assert sorted((r.seed, r.n) for r in backend.requests) == [(10, 3), (13, 1), (15, 3)]
    assert ctx.usage.calls == 3 and ctx.usage.completion_tokens == 2 * 7 and ctx.usage.prompt_tokens == 3 * 5
    assert ctx.usage.cache_hits == 1


async def test_unseeded_native_n_is_chunked_by_the_call_limit():
    backend = SeededNativeBackend(max_n_per_call=4)
    engine = Engine({"m": backend})
    out = await engine.generate(GenerationRequest.from_prompt("p", "m", n=6, temperature=0.8, seed=None), engine.context())
    assert len(out) == 6 and [r.n for r in backend.requests] == [4, 2]


def test_a_seeded_sample_is_keyed_by_its_effective_seed():
    from thinktank.engine.cache import cache_key

    base = GenerationRequest.from_prompt("p", "m", n=8, temperature=0.8, seed=0)
    assert cache_key(base, 4) == cache_key(base.with_(seed=4, n=2), 0)  # adaptive's 2nd wave = samples 4, 5 of n=8
    assert cache_key(base, 5) == cache_key(base.with_(seed=4), 1)
    assert cache_key(base, 4) != cache_key(base, 5)
    unseeded = base.with_(seed=None)
    assert cache_key(unseeded, 4) != cache_key(base, 4) and cache_key(unseeded, 0) != cache_key(unseeded, 1)


async def test_cache_keys_are_those_of_the_request_the_engine_sends(tmp_path):
    # the pool used to hash the request as written; overrides and the budget clamp change what is sent and cached
    from thinktank.engine.cache import cache_key
    from thinktank.engine.engine import Overrides

    cache = ResponseCache(tmp_path / "c.db")
    engine = Engine({"m": ScriptedBackend(echo_index)}, cache=cache)
    request = GenerationRequest.from_prompt("hi", "m", n=2, max_tokens=500)
    ctx = engine.context(Budget(max_tokens=100), overrides=Overrides(temperature=0.3))
    keys = engine.cache_keys(request, ctx)
    assert keys != [cache_key(request, i) for i in range(2)]
    assert keys == [cache_key(request.with_(temperature=0.3, max_tokens=100), i) for i in range(2)]
    await engine.generate(request, ctx)
    assert all(cache.get(key) is not None for key in keys)  # exactly the keys the engine wrote
