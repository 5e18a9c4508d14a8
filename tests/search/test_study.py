"""The study and the whole search: splits, budgets, unknown models, resuming the trial DB, 1,000 configurations, reports."""

import asyncio
import json
import time

import optuna
import pytest
import yaml

from thinktank.arch import load_architecture
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.exceptions import ConfigError, UnknownModelError
from thinktank.search.pool import PoolSpec, SamplePool
from thinktank.search.study import (
    QueryBudget,
    SearchSettings,
    choose,
    open_study,
    pareto_front,
    run_search,
    run_study,
    split_problems,
)

from .fakes import MODELS, engine, problems

SPEC = PoolSpec(models=tuple(MODELS), n=4, test_replies=2, repair_rounds=2)


def test_splits_are_the_seeded_shuffle_and_tiny_ones_are_refused():
    probs = problems(30)
    dev, test = split_problems(probs, 12, 10, seed=3)
    assert len(dev) == 12 and len(test) == 10 and not {p.id for p in dev} & {p.id for p in test}
    assert split_problems(probs, 12, 10, seed=3) == (dev, test) and split_problems(probs, 12, 10, seed=4) != (dev, test)
    with pytest.raises(ConfigError, match="dev split needs at least 10 problems.*--dev 3"):
        split_problems(probs, 3, 10, seed=0)
    with pytest.raises(ConfigError, match="test split needs at least 10"):
        split_problems(probs, 10, 2, seed=0)
    with pytest.raises(ConfigError, match="has 30 problems; --dev 25 --test 10 needs 35"):
        split_problems(probs, 25, 10, seed=0)
    with pytest.raises(ConfigError, match="has 0 problems"):
        split_problems([], 10, 10, seed=0)


def test_budget_parsing():
    assert QueryBudget.parse("5000") == QueryBudget(kind="tokens", limit=5000)
    assert QueryBudget.parse("$0.002") == QueryBudget(kind="usd", limit=0.002)
    for bad in ("lots", "$", "-5", "0"):
        with pytest.raises(ConfigError, match="a positive number"):
            QueryBudget.parse(bad)


async def built_pool(tmp_path, count=10, spec=SPEC):
    eng, backends = engine()
    probs = problems(count)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, spec, engine=eng)
    await pool.build()
    pool.stage = "search"
    return pool, [p.id for p in probs], backends


async def test_unknown_model_fails_before_any_work(tmp_path):
    eng, backends = engine()
    probs = problems(20)
    with pytest.raises(UnknownModelError, match="'nope'"):
        await run_search(eng, task="fake", dev=probs[:10], test=probs[10:], models=["small", "nope"], run_dir=tmp_path,
                         spec=SPEC, settings=SearchSettings(trials=5))  # fmt: skip
    assert not (tmp_path / "pool.sqlite").exists() and not any(b.requests for b in backends.values())


async def test_a_budget_too_small_for_any_configuration_names_the_cheapest(tmp_path):
    eng, _ = engine()
    probs = problems(20)
    settings = SearchSettings(trials=12, draws=2, budget=QueryBudget(kind="tokens", limit=5))
    with pytest.raises(
        ConfigError,
        match=r"no configuration fits the budget of 5 tokens per query: the cheapest of the \d+ evaluated, .*, needs \d+ tokens",
    ):
        await run_search(eng, task="fake", dev=probs[:10], test=probs[10:], models=MODELS, run_dir=tmp_path, spec=SPEC,
                         settings=settings)  # fmt: skip
    with pytest.raises(ConfigError, match="needs a price table"):
        await run_search(eng, task="fake", dev=probs[:10], test=probs[10:], models=MODELS, run_dir=tmp_path, spec=SPEC,
                         settings=SearchSettings(budget=QueryBudget.parse("$0.01")))  # fmt: skip


async def test_a_budget_makes_expensive_configurations_infeasible(tmp_path):
    pool, ids, _ = await built_pool(tmp_path)
    results = await run_study(pool, MODELS, ids, SearchSettings(trials=40, draws=2, budget=QueryBudget(kind="tokens", limit=150)))
    assert any(r.feasible for r in results) and any(not r.feasible for r in results)
    chosen = choose(results, QueryBudget(kind="tokens", limit=150))
    assert chosen.tokens <= 150 and chosen in pareto_front(results)
    assert all(r.feasible for r in pareto_front(results))


async def test_trial_db_resumes_keeping_every_finished_trial(tmp_path):
    pool, ids, _ = await built_pool(tmp_path)
    settings = SearchSettings(trials=10, draws=2, seed=5)
    first = await run_study(pool, MODELS, ids, settings, run_dir=tmp_path)
    assert len(first) == 10

    class StopAfter:  # cancels the study mid-run, like Ctrl-C
        def __init__(self, k):
            self.k, self.task = k, None

        def start(self, label, total):
            pass

        def advance(self):
            self.k -= 1
            if self.k == 0:
                self.task.cancel()

    stopper = StopAfter(4)
    stopper.task = asyncio.create_task(run_study(pool, MODELS, ids, settings.model_copy(update={"trials": 30}),
                                                 run_dir=tmp_path, progress=stopper))  # fmt: skip
    with pytest.raises(asyncio.CancelledError):
        await stopper.task
    # a process killed outright leaves its trial RUNNING: simulate one
    abandoned = open_study(tmp_path, settings).ask()
    assert abandoned.number >= 14

    final = await run_study(pool, MODELS, ids, settings.model_copy(update={"trials": 20}), run_dir=tmp_path)
    assert len(final) == 20
    by_number = {r.number: r for r in final}
    for r in first:
        assert by_number[r.number].config == r.config and by_number[r.number].metrics == r.metrics
    states = {t.number: t.state for t in open_study(tmp_path, settings).trials}
    assert states[abandoned.number] == optuna.trial.TrialState.FAIL
    with pytest.raises(ConfigError, match="draws differ"):
        await run_study(pool, MODELS, ids, settings.model_copy(update={"draws": 3}), run_dir=tmp_path)


async def test_a_thousand_configurations_cost_at_most_twice_the_pool(tmp_path):
    pool, ids, _ = await built_pool(tmp_path, count=10, spec=PoolSpec(models=tuple(MODELS), n=8, test_replies=4))
    started = time.monotonic()
    results = await run_study(pool, MODELS, ids, SearchSettings(trials=1600, draws=4, seed=1, max_n=16))
    distinct = {r.config.key() for r in results}
    costs = pool.cost_summary()
    assert len(distinct) >= 1000, len(distinct)
    assert costs["extension"]["tokens"] > 0  # n = 16 configurations did extend the pool...
    assert costs["search_over_pool"] <= 2.0  # ...yet the whole search stayed within twice the pool's tokens
    assert costs["during_search_over_build"] <= 2.0  # even counting judge scores and repairs made on demand
    assert sum(c.call.tokens for c in pool.costs()) == costs["pool"]["tokens"] + costs["extension"]["tokens"]
    print(f"{len(distinct)} configurations in {time.monotonic() - started:.0f}s; search/pool = {costs['search_over_pool']:.2f}")


async def test_end_to_end_search_writes_the_report_and_confirms_on_test(tmp_path):
    eng, _ = engine()
    probs = problems(24)
    dev, test = split_problems(probs, 12, 10, seed=0)
    preset = RunStore(tmp_path / "preset")  # a preset run on a superset of the test split
    preset.bind_config({"task": "fake", "arch": "sample-8-exec", "models": ["small"]})
    await run_eval(eng, load_architecture("sample-8-exec", ["small"]), probs, preset)
    preset.close()
    outcome = await run_search(eng, task="fake", dev=dev, test=test, models=MODELS, run_dir=tmp_path / "search", spec=SPEC,
                               settings=SearchSettings(trials=30, draws=2), compare=[tmp_path / "preset"])  # fmt: skip
    run_dir = tmp_path / "search"
    data = json.loads((run_dir / "pareto.json").read_text())
    assert data["trials"] == 30 and data["front"] and data["chosen"]["id"] == outcome.chosen.config.short_id()
    assert data["chosen"]["accuracy"] == max(r["accuracy"] for r in data["front"])
    assert {"pool", "extension", "search_over_pool"} <= set(data["costs"])
    assert data["dev_vs_test"]["test"] == outcome.confirmation["accuracy"] and outcome.confirmation["problems"] == 10
    assert outcome.comparisons[0]["problems"] == 10 and outcome.comparisons[0]["arch"] == "sample-8-exec"
    spec = yaml.safe_load((run_dir / "chosen.yaml").read_text())
    assert spec == outcome.chosen.config.to_spec(f"search-{outcome.chosen.config.short_id()}")
    page = (run_dir / "report.html").read_text()
    assert "<svg" in page and "Dev vs test" in page and "Pool cost vs search cost" in page and "sample-8-exec" in page
    # the confirmation is a normal eval run: `thinktank report` reads it
    confirm = RunStore(outcome.confirmation["run"])
    assert len(confirm.records()) == 10 and confirm.get_meta("config")["split"] == "test"
    confirm.close()
    # re-running finds everything done: no new trial, same choice, same confirmation run
    again = await run_search(eng, task="fake", dev=dev, test=test, models=MODELS, run_dir=run_dir, spec=SPEC,
                             settings=SearchSettings(trials=30, draws=2))  # fmt: skip
    assert len(again.results) == 30 and again.chosen.config == outcome.chosen.config
    assert again.confirmation["accuracy"] == outcome.confirmation["accuracy"]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
async def test_a_seeded_study_is_reproducible(tmp_path, sampler):
    pool, ids, _ = await built_pool(tmp_path)
    settings = SearchSettings(trials=25, draws=2, seed=7, sampler=sampler)
    first = await run_study(pool, MODELS, ids, settings)
    again = await run_study(pool, MODELS, ids, settings)
    assert [r.config for r in first] == [r.config for r in again] and [r.metrics for r in first] == [r.metrics for r in again]
    other = await run_study(pool, MODELS, ids, settings.model_copy(update={"seed": 8}))
    assert [r.config for r in other] != [r.config for r in first]
