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
