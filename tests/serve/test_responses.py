"""The result -> response shaping (choices, finish reasons, usage), without HTTP."""

from __future__ import annotations

from thinktank.arch import ArchResult
from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.serve.responses import completion, finish_reason, top_choices
from thinktank.techniques.base import Candidate
from thinktank.usage import Usage


def result_with(texts_answers: list[tuple[str, str | None]], *, reasons=("stop",), budget_cut=False) -> ArchResult:
    root = TraceNode("q")
    gen = root.child("gen")
    gen.calls.append(CallRecord("m", "b", [0], Usage(prompt_tokens=3, completion_tokens=4, calls=1), "ok", 0, 0, list(reasons)))
    candidates = [Candidate(t, a, "m", "gen") for t, a in texts_answers]
    return ArchResult(candidates[0] if candidates else None, candidates, root, budget_cut=budget_cut)


def test_top_choices_are_distinct_by_answer_best_first():
    result = result_with([("x = 1", "1"), ("so 1", "1"), ("2", "2"), ("no answer text", None)])
    assert [c.text for c in top_choices(result, 16)] == ["x = 1", "2", "no answer text"]
    assert [c.text for c in top_choices(result, 2)] == ["x = 1", "2"]


def test_finish_reason_comes_from_the_nodes_calls_or_the_budget():
    assert finish_reason(result_with([("t", "t")], reasons=("length",)), result_with([("t", "t")]).answer) == "length"
    result = result_with([("t", "t")])
    assert finish_reason(result, result.answer) == "stop"
    cut = result_with([("t", "t")], budget_cut=True)
    assert finish_reason(cut, cut.answer) == "length"


def test_completion_usage_is_the_whole_trace_and_nodes_break_it_down():
    result = result_with([("a", "a"), ("b", "b")])
    result.trace.child("judge").calls.append(
        CallRecord("m", "b", [0], Usage(prompt_tokens=10, completion_tokens=1, calls=1, cost_usd=0.5), "ok", 0, 0, ["stop"])
    )
    out = completion("id", 0, "arch", result, n=4, latency_s=1.23456)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (13, 5, 18)
    assert [c.message.content for c in out.choices] == ["a", "b"]
    ext = out.thinktank
    assert (ext.calls, ext.cost_usd, ext.choices_available, ext.latency_s) == (2, 0.5, 2, 1.2346)
    assert [(n.name, n.calls, n.prompt_tokens) for n in ext.nodes] == [("gen", 1, 3), ("judge", 1, 10)]
