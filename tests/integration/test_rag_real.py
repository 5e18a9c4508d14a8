"""Retrieval-QA techniques against the real llama-server (Qwen2.5-Coder-0.5B): read, permute (MoI), rerank.

Three hand-written problems, each with its own three passages (one gold, two distractors sharing names). The checks
are mechanics with real text — one call per order, every token accounted against the server's own counter, the
utilities and orders in the trace — plus a loose accuracy floor (the questions are easy). The `rag-moi` preset
test needs `retrieve` (the retrieval branch) and skips, saying so, until it is importable.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from rag_fixtures import KIND, passage_candidates

from thinktank.arch import build_architecture, load_architecture
from thinktank.backends.llama_server import LlamaServer
from thinktank.engine import Engine
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput

from .conftest import server_metrics

pytestmark = pytest.mark.integration

MODEL = "qwen2.5-coder-0.5b-instruct"
PROBLEMS = [
    ("What is the capital of Veltria?", "Osk", [
        ("veltria", "Veltria is a small island nation. The capital of Veltria is Osk."),
        ("veltra", "Veltra is a river valley. Its largest town is Brisk."),
        ("veltria-food", "Veltria is known for smoked fish and rye bread."),
    ]),
    ("Who founded Morrow Glassworks?", "Ilsa Dravik", [
        ("morrow-tools", "Morrow Toolworks was founded by Peder Hask in 1901."),
        ("morrow-glass", "Morrow Glassworks was founded by Ilsa Dravik."),
        ("glass", "Glassworks melt sand at high temperatures."),
    ]),
    ("In which year did the Quillon Bridge open?", "1887", [
        ("quillon-river", "The Quillon is a slow river with many fish."),
        ("quillon-tower", "The Quillon Tower opened in 1912."),
        ("quillon-bridge", "The Quillon Bridge opened in 1887 after six years of work."),
    ]),
]  # fmt: skip


@pytest.fixture(scope="module")
def server():
    server = LlamaServer(MODEL, slots=4, ctx_per_slot=2048)
    import asyncio

    asyncio.run(server.start())
    yield server
    server.terminate()


def candidates_of(passages):
    return passage_candidates([Passage(pid, text) for pid, text in passages])


async def run(server, spec, task, candidates=None):
    async with server.backend() as backend:
        engine = Engine({server.model: backend})
        ctx = engine.context(use_cache=False)
        before = server_metrics(server)["llamacpp:tokens_predicted_total"]
        arch = build_architecture(spec, [server.model])
        if candidates is not None:
            out = await arch.layers[0][0].technique.apply(ctx.child("under_test"), task, candidates)
        else:
            out = (await arch.run(task, ctx)).candidates
        after = server_metrics(server)["llamacpp:tokens_predicted_total"]
    assert ctx.usage.completion_tokens == after - before  # every call accounted for, nothing else spent
    return out, ctx


def correct(candidate, gold):
    return gold.lower() in (candidate.answer or "").lower()


async def test_permute_reads_every_order_votes_and_debiases(server):
    right = 0
    for i, (question, gold, passages) in enumerate(PROBLEMS):
        task = TaskInput(f"rag-real/{i}", KIND, question)
        out, ctx = await run(server, {"layers": [{"permute": {"m": 3, "final_call": True, "max_tokens": 48}}]}, task,
                             candidates_of(passages))  # fmt: skip
        node = next(n for n in ctx.node.walk() if n.name == "under_test")
        assert node.usage.calls == 4 and len(out) == 4  # 3 orders + the final call
        assert node.notes["orders"] == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]
        assert set(node.notes["utility"]) == {pid for pid, _ in passages} and len(node.notes["position_bias"]) == 3
        right += correct(out[0], gold)
    assert right >= 2, f"only {right} of 3 easy questions answered"


async def test_rerank_then_read_on_real_text(server):
    question, _gold, passages = PROBLEMS[1]
    task = TaskInput("rag-real/rerank", KIND, question)
    spec = {"layers": [{"rerank": {"keep": 2}}]}
    kept, ctx = await run(server, spec, task, candidates_of(passages))
    node = next(n for n in ctx.node.walk() if n.name == "under_test")
    assert len(kept) == 2 and node.usage.calls == 1 + 3
    assert node.notes["unscored"] == 0, node.notes["scores"]  # the 0.5B model's replies parse
    answer, _ = await run(server, {"layers": [{"read": {"max_tokens": 48}}]}, task, kept)
    assert len(answer) == 1 and answer[0].answer


@pytest.mark.skipif(importlib.util.find_spec("thinktank.retrieval") is None,
                    reason="needs `retrieve` from the retrieval branch (thinktank.retrieval is not importable yet)")  # fmt: skip
async def test_rag_moi_preset_over_corpora(server, tmp_path: Path):
    right = 0
    for i, (question, gold, passages) in enumerate(PROBLEMS):
        corpus = tmp_path / f"corpus{i}"
        corpus.mkdir()
        for pid, text in passages:
            (corpus / f"{pid}.txt").write_text(text + "\n")
        task = TaskInput(f"rag-real/moi{i}", KIND, question, corpus=str(corpus))
        async with server.backend() as backend:
            engine = Engine({server.model: backend})
            ctx = engine.context(use_cache=False)
            result = await load_architecture("rag-moi", [server.model]).run(task, ctx)
        assert result.error is None, result.error
        permute = next(n for n in ctx.node.walk() if n.notes.get("orders"))
        assert permute.usage.calls == 6 and len(permute.notes["passages"]) == 3  # the corpus's 3 passages, 6 orders
        right += correct(result.answer, gold)
    assert right >= 2, f"only {right} of 3 easy questions answered"
