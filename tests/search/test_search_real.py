"""A tiny search end to end against the real llama-server (SmolLM2-135M): pool, 20 trials, confirmation through run_eval.

The model is weak, so this checks mechanics with real text — every call accounted for against the server's own
counters, replay agreeing with real runs of the exported YAML, the chosen YAML running for real — not accuracy.
"""

from __future__ import annotations

import json

import pytest
from integration.conftest import server_metrics, small_server  # noqa: F401 — the session fixture

from thinktank.arch import build_architecture, load_architecture
from thinktank.engine import Engine, ResponseCache
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.search.pool import PoolSpec, SamplePool
from thinktank.search.replay import evaluate
from thinktank.search.space import Config, Stage
from thinktank.search.study import SearchSettings, run_search
from thinktank.tasks.humaneval import HumanEvalTask

pytestmark = pytest.mark.integration

DEV, TEST = ["HumanEval/23", "HumanEval/53", "HumanEval/2"], ["HumanEval/28", "HumanEval/42"]


async def test_tiny_search_on_the_real_model(small_server, tmp_path):  # noqa: F811
    by_id = {p.id: p for p in HumanEvalTask().load()}
    dev, test = [by_id[i] for i in DEV], [by_id[i] for i in TEST]
    model = small_server.model
    spec = PoolSpec(models=(model,), n=2, max_tokens=32, test_replies=1, repair_rounds=1, judge_max_tokens=8,
                    repair_max_tokens=32)  # fmt: skip
    before = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
    async with small_server.backend() as backend:
        engine = Engine({model: backend}, cache=ResponseCache(tmp_path / "responses.sqlite"))
        outcome = await run_search(engine, task="humaneval", dev=dev, test=test, models=[model], run_dir=tmp_path, spec=spec,
                                   settings=SearchSettings(trials=20, draws=1, max_n=2, slots=4))  # fmt: skip
        after = server_metrics(small_server)["llamacpp:tokens_predicted_total"]

        assert len(outcome.results) == 20 and outcome.chosen in outcome.front
        assert load_architecture(str(tmp_path / "chosen.yaml"), [model]).name == f"search-{outcome.chosen.config.short_id()}"
        assert outcome.confirmation["problems"] == 2  # the chosen YAML ran through run_eval on the test split
        assert json.loads((tmp_path / "pareto.json").read_text())["dev_vs_test"]["test"] == outcome.confirmation["accuracy"]

        pool = SamplePool(tmp_path / "pool.sqlite", dev, spec, engine=engine)
        pooled = sum(c.call.completion_tokens for c in pool.costs() if not c.call.cached)
        store = RunStore(outcome.confirmation["run"])
        confirmed = sum(r.completion_tokens for r in store.records())
        store.close()
        assert pooled + confirmed == after - before  # every generated token is in the pool's or the confirmation's books

        # replay of draw 0 == a real run of the exported YAML on the dev problems (served by the shared response cache)
        for config in (Config(stage=Stage(model=model, temperature=0.0, repair_rounds=1, repair_model=model), **spec_fixed(spec)),
                       Config(stage=Stage(model=model, temperature=0.8, n=2, selection="exec_vote"), **spec_fixed(spec)),
                       outcome.chosen.config):  # fmt: skip
            if config.adaptive:  # adaptive waves are different requests (cache keys): not served from the pool
                continue
            replayed = await evaluate(pool, config, DEV, draws=0)
            store = RunStore(tmp_path / f"dev-{config.short_id()}")
            await run_eval(engine, build_architecture(config.to_spec(), [model]), dev, store)
            records = {r.problem_id: r for r in store.records()}
            assert {i: records[i].passed for i in DEV} == replayed.canonical, config.label()
            nominal = {i: records[i].tokens + records[i].trace["usage"]["saved_tokens"] for i in DEV}
            assert nominal == replayed.canonical_tokens, config.label()
            store.close()
        pool.close()


def spec_fixed(spec: PoolSpec) -> dict:
    return {"max_tokens": spec.max_tokens, "tests_temperature": spec.tests_temperature,
            "judge_max_tokens": spec.judge_max_tokens, "repair_max_tokens": spec.repair_max_tokens}  # fmt: skip
