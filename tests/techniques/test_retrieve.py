"""The `retrieve` technique: passages as candidates, best first or in corpus order; its parameters and errors."""

import json
import tempfile
from pathlib import Path

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.resources import Resources
from thinktank.exceptions import ConfigError
from thinktank.retrieval import RetrievalError, Retrievers
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.retrieve import Retrieve, recall_at_k
from thinktank.testing.technique_contract import TechniqueContract

ROWS = [
    ("p1", "Paris is the capital of France."),
    ("p2", "The Nile is the longest river in Africa."),
    ("p3", "Mount Everest is the highest mountain on Earth."),
    ("p4", "The capital of Japan is Tokyo, a very large city."),
]


def write_corpus(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in ROWS))
    return path


def engine(tmp_path):
    resources = Resources()
    resources.provide(Retrievers(tmp_path / "cache", progress=False))
    return Engine({"m": ScriptedBackend(lambda r, i: "unused", embedder=lambda t: [float(len(t)), 1.0])}, resources=resources)


def question(corpus, prompt="What is the capital of Japan?"):
    return TaskInput("q1", "text", prompt, corpus=str(corpus))


async def test_passages_become_candidates_best_first(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    ctx = engine(tmp_path).context()
    given = [Candidate("old", "old", "m", "generate")]
    out = await Retrieve(k=2).apply(ctx, question(corpus), given)
    assert [c.passage.id for c in out] == ["p4", "p1"]  # both mention a capital; Japan wins
    first = out[0]
    assert first.text == ROWS[3][1] and first.answer is None and first.node == "retrieve" and first.model == "bm25"
    assert first.scores["retrieve"] == first.passage.score > out[1].passage.score
    assert ctx.node.children[0].notes["passage_ids"] == ["p4", "p1"]
    assert recall_at_k([c.passage.id for c in out], ["p4"]) == 1.0


async def test_corpus_order_keeps_the_top_k_in_file_order(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    out = await Retrieve(k=2, order="corpus").apply(engine(tmp_path).context(), question(corpus), [])
    assert [c.passage.id for c in out] == ["p1", "p4"]
    everything = await Retrieve(k=4, order="corpus").apply(engine(tmp_path).context(), question(corpus), [])
    assert [c.passage.id for c in everything] == ["p1", "p2", "p3", "p4"]


async def test_the_node_corpus_overrides_the_task_and_one_is_needed(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    task = TaskInput("q1", "text", "highest mountain")
    out = await Retrieve(k=1, corpus=str(corpus)).apply(engine(tmp_path).context(), task, [])
    assert out[0].passage.id == "p3"
    with pytest.raises(RetrievalError, match="retrieve needs a corpus"):
        await Retrieve().apply(engine(tmp_path).context(), task, [])


async def test_dense_mode_accounts_the_embedding_calls(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    ctx = engine(tmp_path).context()
    out = await Retrieve(k=3, mode="dense", embedding_model="m").apply(ctx, question(corpus), [])
    assert len(out) == 3 and out[0].model == "m"
    assert ctx.usage.calls == 2 and ctx.usage.prompt_tokens > 0  # passages, then the question


def test_yaml_parameters_are_validated():
    arch = build_architecture({"layers": [{"retrieve": {"k": 3, "mode": "hybrid", "embedding_model": "e"}}]}, ["m"])
    [node] = arch.layers[0]
    assert isinstance(node.technique, Retrieve) and node.technique.k == 3
    for bad in ({"k": 0}, {"mode": "sparse"}, {"order": "random"}, {"mode": "dense"}):
        with pytest.raises(ConfigError):
            build_architecture({"layers": [{"retrieve": bad}]}, ["m"])


_CONTRACT_DIR = Path(tempfile.mkdtemp(prefix="retrieve-contract-"))  # the contract's tests take no fixtures


class TestRetrieveContract(TechniqueContract):
    task = TaskInput("contract/1", "text", "capital of France", corpus=str(write_corpus(_CONTRACT_DIR / "c.jsonl")))

    def _engine(self):
        backend, eng = super()._engine()
        eng.resources.provide(Retrievers(_CONTRACT_DIR / "cache", progress=False))  # not the user's cache
        return backend, eng

    def make_technique(self):
        return Retrieve(k=2)
