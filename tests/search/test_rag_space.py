import json

import optuna
import pytest
import yaml
from rag_fixtures import KIND, prompt_of, shown_order

from thinktank import arch as arch_module
from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.problems import HiddenChecks, Problem
from thinktank.search.rag_space import RAG_KNOBS, RagConfig, evaluate_rag, suggest_rag
from thinktank.tasks.base import TaskInput
from thinktank.techniques.permute import Permute
from thinktank.techniques.read import Read
from thinktank.techniques.rerank import Rerank


@pytest.fixture
def given_retrieve(monkeypatch):
    """`retrieve` served by the fixed-passages stand-in (the real one is the retrieval branch's)."""
    monkeypatch.setitem(arch_module.TECHNIQUES, "retrieve", "rag_fixtures:GivenPassages")


def test_suggest_covers_k_orders_rerank_and_the_model_per_role():
    params = {"rag_reader": "b", "rag_k": 3, "rag_orders": 6, "rag_rerank": True, "rag_rerank_model": "a"}
    config = suggest_rag(optuna.trial.FixedTrial(params), ["a", "b"])
    assert config == RagConfig(reader="b", k=3, orders=6, rerank_model="a")
    plain = suggest_rag(optuna.trial.FixedTrial({"rag_reader": "a", "rag_k": 5, "rag_orders": 1, "rag_rerank": False}), ["a"])
    assert plain.rerank_model is None and plain.label() == "top5 read(a)"
    assert set(RAG_KNOBS) == {"k", "orders", "rerank", "reader model", "rerank model"}


def test_the_exported_yaml_builds_with_the_shipped_techniques(given_retrieve):
    config = RagConfig(reader="b", k=3, orders=6, rerank_model="a")
    spec = yaml.safe_load(config.to_yaml("x"))
    built = build_architecture(spec, ["default"])
    retrieve, rerank, permute = (layer[0].technique for layer in built.layers)
    assert retrieve.k == 6  # the reranker sees twice what it keeps
    assert isinstance(rerank, Rerank) and rerank.model == "a" and rerank.keep == 3
    assert isinstance(permute, Permute) and permute.m == 6 and permute.models == ["b"]
    single = build_architecture(RagConfig(reader="a", k=5).to_spec(), ["default"])
    assert isinstance(single.layers[-1][0].technique, Read) and len(single.layers) == 2


async def test_evaluate_rag_runs_a_fresh_resumable_eval(given_retrieve, tmp_path):
    backend = ScriptedBackend(lambda r, i: "Quillmarsh" if shown_order(prompt_of(r))[0] == "p0" else "Dunmere")
    engine = Engine({"m": backend})
    problems = [Problem(TaskInput(f"q{i}", KIND, "Where was Zorvan Peltrix born?"), HiddenChecks(answer="Quillmarsh"))
                for i in range(2)]  # fmt: skip
    config = RagConfig(reader="m", k=3)
    summary = await evaluate_rag(engine, config, problems, tmp_path)
    assert summary["problems"] == 2 and summary["accuracy"] == 1.0 and len(backend.requests) == 2
    again = await evaluate_rag(engine, config, problems, tmp_path)
    assert again["problems"] == 2 and len(backend.requests) == 2  # resumed: nothing re-run


async def test_the_rag_search_finds_the_front_confirms_the_choice_and_resumes(given_retrieve, tmp_path):
    from thinktank.search.rag_space import run_rag_search
    from thinktank.search.study import SearchSettings

    def reply(request, index):  # the reader is right only when it is shown at least four passages
        return "Answer: Quillmarsh" if len(shown_order(prompt_of(request))) >= 4 else "Answer: Dunmere"

    backend = ScriptedBackend(reply)
    engine = Engine({"m": backend})
    problems = [Problem(TaskInput(f"q{i}", KIND, f"Where was Zorvan Peltrix born? ({i})"), HiddenChecks(answer="Quillmarsh"))
                for i in range(5)]  # fmt: skip
    dev, test = problems[:3], problems[3:]
    settings = SearchSettings(trials=6, seed=0, sampler="tpe", slots=2)
    outcome = await run_rag_search(engine, task="rag", dev=dev, test=test, models=["m"], run_dir=tmp_path, settings=settings)
    by_k = {r.config.k: r.accuracy for r in outcome.results}
    assert by_k[5] == 1.0 and by_k.get(3, 0.0) == 0.0  # the baselines (top-5 read, top-5 permute3) are evaluated first
    assert outcome.chosen.accuracy == 1.0 and outcome.chosen.config.k >= 5
    assert outcome.front and all(r.feasible for r in outcome.front)
    chosen = yaml.safe_load((tmp_path / "chosen.yaml").read_text())
    assert chosen["layers"][0] == {"retrieve": {"k": outcome.chosen.config.k * (2 if outcome.chosen.config.rerank_model else 1)}}
    assert outcome.confirmation and outcome.confirmation["problems"] == 2 and outcome.confirmation["accuracy"] == 1.0
    report = (tmp_path / "report.html").read_text()
    assert "Search cost" in report and "fresh eval" in report and "Pool cost" not in report
    assert json.loads((tmp_path / "pareto.json").read_text())["space"] == "rag"
    calls = len(backend.requests)
    assert outcome.costs["fresh"]["configurations"] == len({r.config.key() for r in outcome.results})
    again = await run_rag_search(engine, task="rag", dev=dev, test=test, models=["m"], run_dir=tmp_path, settings=settings)
    assert len(again.results) == 6 and len(backend.requests) == calls  # resumed: no trial and no call re-run
