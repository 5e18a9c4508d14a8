"""The sample pool: what it holds, resuming a killed build, extensions as search cost, the shared response cache."""

import asyncio

import pytest

from thinktank.arch import load_architecture
from thinktank.engine import ResponseCache
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.exceptions import ConfigError
from thinktank.search.pool import PoolError, PoolSpec, SamplePool
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput

from .fakes import MODELS, engine, problems, variant

SPEC = PoolSpec(models=tuple(MODELS), n=4, test_replies=2)


def requests(backends):
    return [r for b in backends.values() for r in b.requests]


async def test_build_holds_samples_verdicts_keys_and_tests(tmp_path):
    eng, backends = engine()
    probs = problems(3)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC, engine=eng)
    await pool.build()
    for p in probs:
        i = int(p.id[1:])
        assert len(pool.samples("small", 0.0, p.id)) == 1 and len(pool.samples("big", 0.8, p.id)) == 4
        for s, a in enumerate(pool.samples("small", 0.8, p.id)):
            v = variant("small", i, s, 0.8)
            assert a.hidden_passed == (v == "RIGHT")
            assert a.public_passed == (v in ("RIGHT", "LUCKY")) and a.public_score == {"OFF": 0.0, "TIMES": 0.5}.get(v, 1.0)
        assert pool.tests("small", p.id).prefix[0] == 0 and len(pool.tests("small", p.id).replies) == 2
    # RIGHT and LUCKY behave alike on the public inputs, so they share a vote key; the hidden verdict tells them apart
    by_variant = {}
    for s, a in enumerate(pool.samples("big", 0.8, "p01")):
        by_variant.setdefault(variant("big", 1, s, 0.8), set()).add(a.key)
    pool_samples = [a for m in MODELS for t in (0.0, 0.8) for p in probs for a in pool.samples(m, t, p.id)]
    keys = {a.answer: a.key for a in pool_samples}
    right, lucky = (next(k for ans, k in keys.items() if ans and f"return x + 1{tail}" in ans) for tail in ("\n", " if"))
    assert right == lucky and right is not None
    # every generated test ran against every distinct hot answer
    answers = {a.answer for m in MODELS for p in probs for a in pool.samples(m, 0.8, p.id) if a.answer and p.id == "p02"}
    assert all(pool.test_results("big", "p02", a) is not None for a in answers)
    # the pool's cost is exactly what the backends were asked for
    summary = pool.cost_summary()
    assert summary["pool"]["calls"] == len(requests(backends)) == 3 * 2 * (1 + 4 + 2)
    assert summary["extension"]["tokens"] == 0 and summary["search_over_pool"] == 0.0


async def test_a_killed_build_resumes_with_only_the_missing_calls(tmp_path):
    probs = problems(6)
    eng, _ = engine(delay_s=0.02)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC, engine=eng, concurrency=2)
    build = asyncio.create_task(pool.build())
    while not pool.samples("small", 0.8, probs[2].id) and not build.done():  # some problems of the 2nd step are in
        await asyncio.sleep(0.01)
    build.cancel()
    with pytest.raises(asyncio.CancelledError):
        await build
    pool.close()
    kept = {(m, t, p.id): len(pool.samples(m, t, p.id)) for m in MODELS for t in (0.0, 0.8) for p in probs}
    assert 0 < sum(kept.values()) < 6 * 2 * 5 and all(v in (0, SPEC.size(t)) for (_, t, _), v in kept.items())

    eng, backends = engine()
    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC, engine=eng)
    assert {k: len(pool.samples(*k)) for k in kept} == kept  # whole problems only, reloaded from disk
    await pool.build()
    missing_samples = sum(SPEC.size(t) - v for (_, t, _), v in kept.items())
    asked = [r for r in requests(backends) if "unit tests" not in r.messages[-1]["content"]]
    assert len(asked) == missing_samples  # nothing generated twice
    assert all(len(pool.samples(m, t, p.id)) == SPEC.size(t) for m in MODELS for t in (0.0, 0.8) for p in probs)


async def test_extension_continues_the_seeds_and_counts_as_search_cost(tmp_path):
    eng, backends = engine()
    probs = problems(2)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, PoolSpec(models=("big",), n=4, temperatures=(0.8,)), engine=eng)
    await pool.build()
    pool_tokens = pool.cost_summary()["pool"]["tokens"]
    before = len(backends["big"].requests)
    pool.stage = "search"
    await pool.ensure_samples("big", 0.8, 7, [p.id for p in probs])
    seeds = sorted(r.seed for r in backends["big"].requests[before:])
    assert seeds == [4, 4, 5, 5, 6, 6]  # new samples only, seeds continue, nothing reused or wrapped around
    for p in probs:
        texts = [a.text for a in pool.samples("big", 0.8, p.id)]
        assert len(texts) == 7 and [variant("big", int(p.id[1:]), s, 0.8) for s in range(7)] == [
            next(v for v in ("RIGHT", "LUCKY", "OFF", "TIMES") if _is(t, int(p.id[1:]), v)) for t in texts
        ]
    summary = pool.cost_summary()
    assert summary["pool"]["tokens"] == pool_tokens
    assert (
        summary["extension"]["calls"] == 6 and summary["extension"]["during_search_tokens"] == summary["extension"]["tokens"] > 0
    )
    assert summary["search_over_pool"] == pytest.approx(summary["extension"]["tokens"] / pool_tokens)
    pool.close()
    reopened = SamplePool(tmp_path / "pool.sqlite", probs, PoolSpec(models=("big",), n=4, temperatures=(0.8,)))
    assert reopened.cost_summary() == summary  # costs survive a restart


def _is(text, i, v):
    from .fakes import program

    return program(i, v) in text


async def test_pool_shares_the_response_cache_with_eval_runs(tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    eng, backends = engine(cache=cache)
    probs = problems(3)
    store = RunStore(tmp_path / "eval")
    await run_eval(eng, load_architecture("sample-8-vote", ["big"]), probs, store)  # 8 samples at 0.8 from big
    before = len(requests(backends))
    pool = SamplePool(
        tmp_path / "pool.sqlite", probs, PoolSpec(models=("big",), n=8, temperatures=(0.8,), test_replies=1), engine=eng
    )
    await pool.build()
    asked = requests(backends)[before:]
    assert all("unit tests" in r.messages[-1]["content"] for r in asked)  # every sample was a cache hit
    samples = pool.samples("big", 0.8, "p00")
    assert all(a.call.cached and a.call.latency_s is None and a.call.tokens > 0 for a in samples)
    assert pool.cost_summary()["pool"]["fresh_tokens"] < pool.cost_summary()["pool"]["tokens"]
    assert pool.seconds_per_token("big") > 0  # measured on the fresh (test-writing) calls, used for the cached ones


async def test_pool_refuses_other_settings_and_sql_tasks(tmp_path):
    probs = problems(2)
    SamplePool(tmp_path / "pool.sqlite", probs, SPEC).close()
    with pytest.raises(ConfigError, match="spec differ"):
        SamplePool(tmp_path / "pool.sqlite", probs, SPEC.model_copy(update={"n": 8}))
    with pytest.raises(ConfigError, match="problems differ"):
        SamplePool(tmp_path / "pool.sqlite", problems(3), SPEC)
    sql = Problem(TaskInput("s", "sql", "q?", schema="Table: t. Columns: a"), HiddenChecks(gold_sql="SELECT a FROM t"))
    with pytest.raises(ConfigError, match="SQL"):
        SamplePool(tmp_path / "other.sqlite", [sql], SPEC)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC)  # no engine: reading works, generating says why not
    with pytest.raises(PoolError, match="no engine"):
        await pool.ensure_samples("big", 0.8, 2, ["p00"])
