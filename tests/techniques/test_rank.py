import re

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import complete_order, parse_choice, parse_ranking, parse_score
from thinktank.techniques.base import Candidate
from thinktank.techniques.rank import Rank

TASK = TaskInput("p1", "math", "What is 20 + 22? End with #### <number>.")


def cand(text: str) -> Candidate:
    return Candidate(text, extract(TASK, text), "m", "gen")


def prompt_of(request) -> str:
    return request.messages[-1]["content"]


def calls_of(ctx):
    return [call for node in ctx.node.walk() for call in node.calls]


def rank(**kwargs) -> Rank:
    technique = Rank("judge", **kwargs)
    technique.name = "rank1"
    return technique


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Looks right.\nScore: 7", 7.0),
        ("**Rating:** 8.5", 8.5),
        ("I'd give it 6/10.", 6.0),
        ("solid, 9 out of 10", 9.0),
        ("Assessment: fine\n\n3", 3.0),
        ("Score: 42 — wait, Score: 4", 4.0),
        ("Step 2 uses 20 + 22 = 42.", None),
        ("Score: 0", None),
    ],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("B handles empty input.\nWinner: B", "B"),
        ("**Winner:** Response A", "A"),
        ("[[B]]", "B"),
        ("Response A is better because it checks bounds.", "A"),
        ("The answer is a number, so ...\nA", "A"),
        ("both are fine", None),
    ],
)
def test_parse_choice(text, choice):
    assert parse_choice(text) == choice


def test_parse_ranking_is_robust_and_partial_orders_are_completed():
    assert parse_ranking("Reason...\nRanking: [2] > [1] > [3]", 3) == [1, 0, 2]
    assert parse_ranking("I think [3] is best.\n3 > 1", 3) == [2, 0]
    assert parse_ranking("Ranking: [4] > [9] > [4] > [1]", 4) == [3, 0]  # out of range and repeats dropped
    assert parse_ranking("no idea", 3) == []
    assert complete_order([2], 4) == [2, 0, 1, 3]


def score_judge(request, _i):
    """Scores by the final answer of the response it is shown; can't make up its mind about 40."""
    response = prompt_of(request).split("Response:")[-1]
    if "#### 42" in response:
        return "Correct arithmetic.\nScore: 9"
    if "#### 41" in response:
        return "Off by one. 4/10"
    return "Hard to say."


async def test_pointwise_picks_best_scored_unparseable_last_and_calls_overlap():
    backend = ScriptedBackend(score_judge, delay_s=0.05)
    ctx = Engine({"judge": backend}).context()
    candidates = [cand("20+22 is 40\n#### 40"), cand("#### 41"), cand("so 42\n#### 42"), cand("= 42.0\n#### 42.0")]
    out = await rank(top_k=3).apply(ctx, TASK, candidates)
    assert [c.answer for c in out] == ["42", "42.0", "41"]  # both 42s share the group's score
    assert [c.scores["rank1"] for c in out] == [9.0, 9.0, 4.0]
    assert "rank1" not in candidates[0].scores and ctx.node.notes["unscored"] == [0]
    assert ctx.node.notes["order"] == [2, 3, 1, 0]
    calls = calls_of(ctx)
    assert len(calls) == 3  # one judge call per distinct answer (42 == 42.0)
    first_end = min(c.started_s + c.latency_s for c in calls)
    assert all(c.started_s < first_end for c in calls)
    assert "Hard to say." in str(ctx.node.notes["judge"])


async def test_pointwise_samples_are_averaged():
    backend = ScriptedBackend(lambda r, i: f"Score: {6 + 2 * (r.seed % 2)}")  # seeds 0 and 1 give 6 and 8
    ctx = Engine({"judge": backend}).context()
    out = await rank(samples=2, temperature=0.7).apply(ctx, TASK, [cand("#### 42")])
    assert out[0].scores["rank1"] == 7.0 and len(backend.requests) == 2


def biased_judge(request, _i):
    """Prefers the correct answer; between two wrong ones it always picks whatever is shown first."""
    prompt = prompt_of(request)
    a = prompt.split("Response A:")[1].split("Response B:")[0]
    b = prompt.split("Response B:")[1]
    if ("#### 42" in a) != ("#### 42" in b):
        return "Winner: A" if "#### 42" in a else "Winner: B"
    return "Both look plausible.\nWinner: A"


async def test_pairwise_swap_cancels_position_bias():
    ctx = Engine({"judge": ScriptedBackend(biased_judge)}).context()
    candidates = [cand("#### 1"), cand("#### 2"), cand("#### 42")]
    out = await rank(mode="pairwise").apply(ctx, TASK, candidates)
    assert [c.answer for c in out] == ["42", "1", "2"]
    assert [c.scores["rank1"] for c in out] == [2.0, 0.5, 0.5]  # the biased match is a tie, not a win for slot A
    (bias_match,) = [m for m in ctx.node.notes["matches"] if m["pair"] == [0, 1]]
    assert bias_match["orders"] == [[0, 1], [1, 0]] and bias_match["choices"] == ["A", "A"]
    assert bias_match["share_first"] == 0.5
    assert len(calls_of(ctx)) == 6  # 3 round-robin matches, both orders each


async def test_pairwise_random_order_is_seeded_and_recorded():
    async def run(seed):
        ctx = Engine({"judge": ScriptedBackend(biased_judge)}).context()
        out = await rank(mode="pairwise", debias="random", seed=seed).apply(ctx, TASK, [cand("#### 1"), cand("#### 2")])
        return out, ctx

    out, ctx = await run(3)
    (match,) = ctx.node.notes["matches"]
    assert ctx.node.notes["seed"] == 3 and len(calls_of(ctx)) == 1
    shown_first = match["orders"][0][0]
    assert out[0] is not None and out[0].answer == ["1", "2"][shown_first]  # the bias decides; the order says why
    orders = {tuple((await run(seed))[1].node.notes["matches"][0]["orders"][0]) for seed in range(8)}
    assert orders == {(0, 1), (1, 0)}  # different seeds do vary the order
    assert (await run(3))[1].node.notes["matches"][0]["orders"] == match["orders"]


async def test_pairwise_elimination_rounds_run_concurrently():
    backend = ScriptedBackend(biased_judge, delay_s=0.02)
    ctx = Engine({"judge": backend}).context()
    candidates = [cand(f"#### {k}") for k in (1, 2, 3, 4, 5)] + [cand("#### 42")]
    out = await rank(mode="pairwise").apply(ctx, TASK, candidates)
    # round 0: (0,1)->0 (tie, earlier advances), (2,3)->2, (4,5)->5; round 1: (0,2)->0, 5 bye; round 2: 5 beats 0
    assert ctx.node.notes["order"] == [5, 0, 2, 1, 3, 4]
    assert out[0].answer == "42" and out[0].scores["rank1"] == 3.0
    rounds = {n.name: n.calls for n in ctx.node.children}
    assert list(rounds) == ["round0", "round1", "round2"] and [len(c) for c in rounds.values()] == [6, 2, 2]
    first_end = min(c.started_s + c.latency_s for c in rounds["round0"])
    assert all(c.started_s < first_end for c in rounds["round0"])
    assert min(c.started_s for c in rounds["round1"]) >= first_end  # rounds are sequential


async def test_listwise_parses_partial_order_in_one_call():
    def judge(request, _i):
        assert "[4]" in prompt_of(request) and "[5]" not in prompt_of(request)
        return "The third is right.\nRanking: [3] > [1]"

    backend = ScriptedBackend(judge)
    ctx = Engine({"judge": backend}).context()
    candidates = [cand("#### 1"), cand("#### 2"), cand("#### 42"), cand("#### 4")]
    out = await rank(mode="listwise", top_k=2).apply(ctx, TASK, candidates)
    assert [c.answer for c in out] == ["42", "1"]
    assert [c.scores["rank1"] for c in candidates] == [3.0, 2.0, 4.0, 1.0]  # missing ones keep their order
    assert ctx.node.notes["parsed"] == [[2, 0]] and len(backend.requests) == 1


async def test_single_distinct_candidate_needs_no_comparison():
    backend = ScriptedBackend(lambda r, i: "Winner: A")
    ctx = Engine({"judge": backend}).context()
    candidates = [cand("#### 42"), cand("so #### 42")]
    assert await rank(mode="pairwise").apply(ctx, TASK, candidates) == candidates
    assert backend.requests == [] and "nothing to compare" in ctx.node.notes["skipped"]
    assert await rank().apply(ctx, TASK, []) == []


async def test_rank_in_yaml_architecture_uses_default_model():
    def handler(request, _i):
        prompt = prompt_of(request)
        if prompt.startswith("Rank the"):
            bracket = re.search(r"\[(\d)\]\n#### 42", prompt)
            return f"Ranking: [{bracket.group(1)}]"
        return f"#### {40 + request.seed}"  # samples 0..2 -> 40, 41, 42

    engine = Engine({"m": ScriptedBackend(handler)})
    spec = {"layers": [{"generate": {"n": 3, "temperature": 0.8}}, {"rank": {"mode": "listwise", "top_k": 1}}]}
    arch = build_architecture(spec, ["m"])
    assert arch.layers[1][0].technique.model == "m"
    result = await arch.run(TASK, engine.context())
    assert [c.answer for c in result.candidates] == ["42"]
