import asyncio
import time

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine
from thinktank.tasks.base import TaskInput
from thinktank.techniques.adaptive import AdaptiveSample, leader_confidence

MATH = TaskInput("m1", "math", "What is 6*7?")
CODE = TaskInput("c1", "code", "Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2", "assert inc(5) == 6"))
GOOD = "```python\ndef inc(x):\n    return x + 1\n```"
WRONG = "```python\ndef inc(x):\n    return x * 2\n```"


def calls(ctx):
    return [call for node in ctx.node.walk() for call in node.calls]


def test_leader_confidence_is_the_beta_posterior_tail():
    assert leader_confidence(4, 0) == pytest.approx(31 / 32)  # P(p > 1/2), p ~ Beta(5, 1) = 1 - 0.5**5
    assert leader_confidence(3, 1) == pytest.approx(26 / 32)
    assert leader_confidence(2, 2) == pytest.approx(0.5)
    assert leader_confidence(10, 2) > 0.95 > leader_confidence(6, 2)


async def test_stops_after_one_wave_when_all_agree():
    backend = ScriptedBackend(lambda r, i: "#### 42", delay_s=0.05)
    ctx = Engine({"m": backend}).context()
    out = await AdaptiveSample(["m"], max_n=16, wave=4).apply(ctx, MATH, [])
    assert len(out) == 4 and all(c.answer == "42" and c.scores["adaptive"] == 1.0 for c in out)
    assert ctx.usage.calls == 4 and sorted(r.seed for r in backend.requests) == [0, 1, 2, 3]
    assert ctx.node.notes["waves"] == 1 and ctx.node.notes["stop_reason"].startswith("leader settled")
    first_end = min(c.started_s + c.latency_s for c in calls(ctx))
    assert all(c.started_s < first_end for c in calls(ctx))  # one wave's samples run in parallel


async def test_samples_more_waves_while_answers_disagree_but_stops_before_max_n():
    # samples 0 and 2 say 7, every other one 42: 2-2 after one wave, 6-2 after two, 10-2 after three
    backend = ScriptedBackend(lambda r, i: "#### 7" if r.seed in (0, 2) else "The answer is 42.")
    ctx = Engine({"m": backend}).context()
    out = await AdaptiveSample(["m"], max_n=16, wave=4).apply(ctx, MATH, [])
    notes = ctx.node.notes
    assert notes["waves"] == 3 and [h["leader"] for h in notes["history"]] == [2, 6, 10]
    assert ctx.usage.calls == 12 < 16 and sorted(r.seed for r in backend.requests) == list(range(12))
    assert out[0].answer == "42" and out[0].scores["adaptive"] == pytest.approx(10 / 12)
    assert [c.answer for c in out[-2:]] == ["7", "7"]
    assert [child.name for child in ctx.node.children] == ["wave0", "wave1", "wave2"]


async def test_gives_up_at_max_n_on_a_split_vote():
    ctx = Engine({"m": ScriptedBackend(lambda r, i: f"#### {r.seed % 2}")}).context()
    out = await AdaptiveSample(["m"], max_n=6, wave=4).apply(ctx, MATH, [])
    assert len(out) == 6 and ctx.usage.calls == 6 and ctx.node.notes["stop_reason"] == "max_n reached"


async def test_waves_launched_ahead_are_cancelled_when_it_stops():
    async def reply(request, i):
        if request.seed >= 4:  # the look-ahead wave would take far longer than the test
            await asyncio.sleep(30)
        return "#### 42"

    ctx = Engine({"m": ScriptedBackend(reply)}).context()
    start = time.monotonic()
    out = await AdaptiveSample(["m"], max_n=16, wave=4, lookahead=1).apply(ctx, MATH, [])
    assert time.monotonic() - start < 5
    assert len(out) == 4 and ctx.node.notes["waves"] == 1
    statuses = {child.name: [c.status for c in child.calls] for child in ctx.node.children}
    assert statuses == {"wave0": ["ok"] * 4, "wave1": ["cancelled"] * 4}


async def test_first_pass_stops_at_a_passing_program_even_in_the_minority():
    # samples 0, 1, 3 write the same wrong program; sample 2 the right one
    backend = ScriptedBackend(lambda r, i: GOOD if r.seed == 2 else WRONG)
    ctx = Engine({"m": backend}).context()
    out = await AdaptiveSample(["m"], max_n=16, wave=2, first_pass=True).apply(ctx, CODE, [])
    assert ctx.usage.calls == 4 and ctx.node.notes["stop_reason"] == "a candidate passed all public tests"
    assert "x + 1" in out[0].answer and out[0].verdicts["adaptive"]["passed"] is True
    assert out[0].scores["adaptive"] == 0.25 and out[1].scores["adaptive"] == 0.75
    assert out[1].verdicts["adaptive"]["score"] == 0.5


async def test_budget_exhaustion_returns_the_votes_so_far():
    ctx = Engine({"m": ScriptedBackend(lambda r, i: f"#### {r.seed % 3}")}).context(Budget(max_calls=5))
    out = await AdaptiveSample(["m"], max_n=16, wave=4).apply(ctx, MATH, [])
    assert 4 <= len(out) < 16 and ctx.node.notes["stop_reason"].startswith("budget exhausted")


async def test_several_models_share_the_waves_round_robin():
    backend = ScriptedBackend(lambda r, i: "#### 42")
    eng = Engine({"a": backend, "b": backend})
    arch = build_architecture({"layers": [{"adaptive": {"wave": 4, "max_n": 8}}]}, ["a", "b"])
    result = await arch.run(MATH, eng.context())
    assert sorted(c.model for c in result.candidates) == ["a", "a", "b", "b"]
    assert sorted((r.model, r.seed) for r in backend.requests) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert result.answer.answer == "42"
