"""Every technique once against the real llama-server (SmolLM2-135M, short outputs).

The model is weak, so these tests check mechanics with real text — calls, accounting
against the server's own counters, trace shape, sandbox verdicts — not accuracy.
"""

from __future__ import annotations

import pytest

from thinktank.arch import build_architecture
from thinktank.engine import Engine
from thinktank.tasks.gsm_symbolic import GsmSymbolicTask
from thinktank.tasks.humaneval import HumanEvalTask

from .conftest import server_metrics

pytestmark = pytest.mark.integration

GEN = {"n": 4, "temperature": 0.8, "max_tokens": 96}


@pytest.fixture(scope="module")
def code_task():
    return HumanEvalTask().load(limit=1, offset=2)[0].input  # truncate_number: short, has public tests


@pytest.fixture(scope="module")
def math_task():
    return GsmSymbolicTask(n=1, seed=3).load(limit=1)[0].input


async def run(small_server, spec, task):
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context()
        before = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
        result = await build_architecture(spec, [small_server.model]).run(task, ctx)
        after = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
    assert result.error is None, result.error
    assert ctx.usage.completion_tokens == after - before  # every call accounted for, nothing else spent
    return result, ctx


def calls_of(ctx, name):
    node = next(n for n in ctx.node.walk() if n.name == name)
    return node.usage.calls


async def test_sample_and_vote_math(small_server, math_task):
    result, ctx = await run(small_server, {"layers": [{"generate": GEN}, {"vote": {}}]}, math_task)
    assert len(result.candidates) == 4 and calls_of(ctx, "generate0") == 1  # 4 seeded samples, one call on 4 slots
    vote = next(n for n in ctx.node.walk() if n.name == "vote1")
    assert "groups" in vote.notes
    assert result.answer.scores["vote1"] == max(c.scores["vote1"] for c in result.candidates)


async def test_verify_exec_and_vote_code(small_server, code_task):
    spec = {"layers": [{"generate": GEN}, {"verify_exec": {"mode": "score"}}, {"vote": {"prior": "verify_exec1"}}]}
    result, _ = await run(small_server, spec, code_task)
    verdicts = [c.verdicts["verify_exec1"] for c in result.candidates]
    assert all("reason" in v for v in verdicts)
    scores = [c.scores["verify_exec1"] for c in result.candidates]
    assert result.answer.scores["verify_exec1"] == max(scores)


async def test_repair_loop_runs_on_failures(small_server, code_task):
    spec = {"layers": [{"generate": {"n": 1, "max_tokens": 96}}, {"repair": {"rounds": 2, "max_tokens": 96}}]}
    result, ctx = await run(small_server, spec, code_task)
    repair = next(n for n in ctx.node.walk() if n.name == "repair1")
    assert repair.usage.calls <= 2
    if repair.usage.calls:  # the greedy answer failed a public test, so the loop ran and said how it ended
        (loop,) = repair.children  # one candidate repaired (top_k=1)
        assert loop.notes["stop"].startswith(("passed in round", "still failing"))
        assert [child.name for child in loop.children] == [f"round{r}" for r in range(1, repair.usage.calls + 1)]
        assert repair.notes["repaired"] == [0]
    assert result.answer is not None


async def test_gen_tests_codet(small_server, code_task):
    spec = {"layers": [{"generate": GEN}, {"gen_tests": {"n_tests": 2, "max_tokens": 128}}]}
    result, ctx = await run(small_server, spec, code_task)
    assert calls_of(ctx, "gen_tests1") >= 1
    assert all("gen_tests1" in c.scores for c in result.candidates) or ctx.node.children[1].notes
    assert len(result.candidates) == 4


async def test_rank_and_fuse(small_server, math_task):
    spec = {
        "layers": [{"generate": GEN}, {"rank": {"mode": "pointwise", "top_k": 2, "max_tokens": 32}}, {"fuse": {"max_tokens": 96}}]
    }
    result, ctx = await run(small_server, spec, math_task)
    assert 1 <= calls_of(ctx, "rank1") <= 4
    assert calls_of(ctx, "fuse2") <= 1
    assert result.answer is not None


async def test_critique_refine(small_server, math_task):
    spec = {"layers": [{"generate": {"n": 1, "max_tokens": 64}}, {"critique": {"rounds": 1, "max_tokens": 64}}]}
    _, ctx = await run(small_server, spec, math_task)
    assert 1 <= calls_of(ctx, "critique1") <= 2


async def test_adaptive_stops_within_max(small_server, math_task):
    spec = {"layers": [{"adaptive": {"max_n": 8, "wave": 4, "max_tokens": 64}}]}
    result, ctx = await run(small_server, spec, math_task)
    assert ctx.usage.calls in (1, 2) and len(result.candidates) == 4 * ctx.usage.calls  # a call per wave
    assert ctx.node.children[0].notes["stop_reason"]


async def test_cascade_escalates_on_low_margin(small_server, math_task):
    stage = {"layers": [{"generate": GEN}, {"vote": {}}]}
    spec = {"layers": [{"cascade": {"stages": [stage, stage], "thresholds": [1.01], "signal": "vote_share"}}]}
    _, ctx = await run(small_server, spec, math_task)
    names = {n.name for n in ctx.node.walk()}
    assert {"stage0", "stage1"} <= names  # a threshold above 1 always escalates
