import re

import pytest
from rag_fixtures import TASK, passage_candidates, preset_with_given_passages, prompt_of, shown_order

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.techniques.base import Candidate
from thinktank.techniques.rerank import Rerank, parse_criteria, parse_criterion_scores

#: per passage id: (relevance, specificity)
RATINGS = {"p0": (6, 9), "p1": (8, 1), "p2": (3, 3), "p3": (5, 5), "p4": (2, 0)}


def judge(criteria_reply="specificity: 0.5\nauthority: 0.25", score_format="Relevance: {r}\nSpecificity: {s}"):
    def reply(request, index):
        prompt = prompt_of(request)
        if "which criteria" in prompt:
            return criteria_reply
        (pid,) = shown_order(prompt)
        r, s = RATINGS[pid]
        return score_format.format(r=r, s=s)

    return reply


def engine(reply):
    backend = ScriptedBackend(reply)
    return backend, Engine({"m": backend})


def test_parse_criteria_accepts_common_variants_and_drops_the_rest():
    text = "Sure! Criteria:\n1. **Recency**: 0.4\n- authority = 30%\nSpecificity - 7\nrelevance: 1\nnonsense line\nbig: 0"
    assert parse_criteria(text, 5) == {"recency": 0.4, "authority": 0.3, "specificity": 0.7}
    assert parse_criteria(text, 2) == {"recency": 0.4, "authority": 0.3}
    assert parse_criteria("I think relevance matters most.", 3) == {}


def test_parse_criterion_scores():
    assert parse_criterion_scores(
        "**Relevance:** 7\nrecency = 3/10\nAuthority score: 11", ["relevance", "recency", "authority"]
    ) == {
        "relevance": 7.0,
        "recency": 3.0,
    }


async def test_multi_criteria_rank_by_the_weighted_sum_and_keep_truncates():
    backend, eng = engine(judge())
    ctx = eng.context()
    out = await Rerank("m", keep=3).apply(ctx, TASK, passage_candidates())
    # weights: relevance 1, specificity 0.5, authority 0.25 (no line: neutral 5); sum 1.75
    totals = {pid: (r + 0.5 * s + 0.25 * 5) / 1.75 for pid, (r, s) in RATINGS.items()}
    expected = sorted(totals, key=lambda pid: -totals[pid])[:3]
    assert [c.passage.id for c in out] == expected == ["p0", "p1", "p3"]
    assert out[0].scores["rerank"] == pytest.approx(totals["p0"])
    assert ctx.node.notes["criteria"] == {"relevance": 1.0, "specificity": 0.5, "authority": 0.25}
    assert len(backend.requests) == 1 + 5 and ctx.usage.calls == 6
    assert all(r.seed == 0 and r.temperature == 0.0 for r in backend.requests)
    scoring = [prompt_of(r) for r in backend.requests if "which criteria" not in prompt_of(r)]
    assert all("Specificity: <0-10>" in p and "Authority: <0-10>" in p for p in scoring)


async def test_single_mode_is_relevance_only_with_one_call_per_passage():
    backend, eng = engine(judge())
    out = await Rerank("m", criteria="single").apply(eng.context(), TASK, passage_candidates())
    assert [c.passage.id for c in out] == ["p1", "p0", "p3", "p2", "p4"]
    assert len(backend.requests) == 5 and not any("which criteria" in prompt_of(r) for r in backend.requests)


async def test_unreadable_criteria_fall_back_to_relevance_only():
    _backend, eng = engine(judge(criteria_reply="Relevance is what matters here."))
    ctx = eng.context()
    out = await Rerank("m").apply(ctx, TASK, passage_candidates())
    assert [c.passage.id for c in out] == ["p1", "p0", "p3", "p2", "p4"]
    assert "criteria_fallback" in ctx.node.notes and ctx.node.notes["criteria"] == {"relevance": 1.0}


async def test_a_bare_score_counts_as_relevance_and_an_unscored_passage_keeps_its_place_after_the_scored():
    def reply(request, index):
        (pid,) = shown_order(prompt_of(request))
        return {"p0": "I cannot tell.", "p3": "Score: 9"}.get(pid, f"Relevance: {RATINGS[pid][0]}")

    _backend, eng = engine(reply)
    ctx = eng.context()
    out = await Rerank("m", criteria="single").apply(ctx, TASK, passage_candidates())
    assert [c.passage.id for c in out] == ["p3", "p1", "p2", "p4", "p0"]
    assert ctx.node.notes["unscored"] == 1 and "rerank" not in out[-1].scores


async def test_candidates_without_a_passage_pass_through_after_the_kept_ones():
    _backend, eng = engine(judge())
    answer = Candidate("Quillmarsh", "Quillmarsh", "m", "read")
    out = await Rerank("m", keep=1).apply(eng.context(), TASK, [answer, *passage_candidates()])
    assert [c.passage.id if c.passage else c.text for c in out] == ["p0", "Quillmarsh"]


async def test_rag_rerank_preset_reads_the_kept_passages_in_rerank_order():
    def reply(request, index):
        prompt = prompt_of(request)
        if "which criteria" in prompt or "Rate the passage" in prompt:
            return judge()(request, index)
        return "Quillmarsh"

    backend, eng = engine(reply)
    result = await preset_with_given_passages("rag-rerank", ["m"]).run(TASK, eng.context())
    read = [prompt_of(r) for r in backend.requests if re.search(r"\[2\]", prompt_of(r))]
    assert result.answer.answer == "Quillmarsh" and len(read) == 1
    assert shown_order(read[0]) == ["p0", "p1", "p3", "p2", "p4"]  # all 5 kept, by the weighted sum
