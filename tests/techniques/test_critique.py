from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.critique import CritiqueRefine, approves

TASK = TaskInput("p1", "math", "What is 20 + 22? End with #### <number>.")


def cand(text: str) -> Candidate:
    return Candidate(text, extract(TASK, text), "m", "gen")


def critic(**kwargs) -> CritiqueRefine:
    technique = CritiqueRefine("critic", **kwargs)
    technique.name = "crit"
    return technique


def arithmetic_critic(request, _i):
    """Objects to any answer but 42; the rewrite follows the review it was given."""
    prompt = request.messages[-1]["content"]
    if prompt.startswith("Review the response"):
        response = prompt.split("Response:")[-1]
        return "NO PROBLEMS" if "#### 42" in response else "1. The sum is wrong: 20 + 22 = 42."
    assert prompt.startswith("Improve the response")
    review = prompt.split("Review:")[1]
    return "20 + 22 = 42\n#### 42" if "= 42" in review else "#### 0"


def test_approves_reads_the_marker_on_first_or_last_line():
    assert approves("NO PROBLEMS") and approves("**No problems.**") and approves("Checked every step.\nNo problems")
    assert not approves("1. Problems: the sum is wrong.\n2. Fix it.") and not approves("")


async def test_critique_then_refine_produces_the_refined_answer():
    backend = ScriptedBackend(arithmetic_critic)
    ctx = Engine({"critic": backend}).context()
    candidates = [cand("20 + 22 = 41\n#### 41"), cand("#### 40")]
    out = await critic(rounds=2).apply(ctx, TASK, candidates)
    assert [c.answer for c in out] == ["42", "40"]  # refined first, then the untouched rest
    refined = out[0]
    assert refined.node == "crit" and refined.model == "critic"
    verdict = refined.verdicts["crit"]
    assert verdict["passed"] and verdict["details"]["critiques"] == ["1. The sum is wrong: 20 + 22 = 42.", "NO PROBLEMS"]
    assert verdict["details"]["refinements"] == 1 and verdict["details"]["source"] == 0
    (chain,) = ctx.node.children
    steps = [(n.name, len(n.calls)) for n in chain.children]
    assert steps == [("critique0", 1), ("refine0", 1), ("critique1", 1)]  # round 2 stopped: the critic approved
    starts = [n.calls[0].started_s for n in chain.children]
    assert starts == sorted(starts)
    assert refined.usage.calls == 3 and ctx.usage.calls == 3


async def test_all_rounds_run_when_the_critic_keeps_objecting():
    def stubborn(request, _i):
        prompt = request.messages[-1]["content"]
        return "The answer is wrong." if prompt.startswith("Review") else f"#### {len(prompt)}"

    ctx = Engine({"critic": ScriptedBackend(stubborn)}).context()
    (out,) = await critic(rounds=3).apply(ctx, TASK, [cand("#### 41")])
    verdict = out.verdicts["crit"]
    assert not verdict["passed"] and verdict["details"]["refinements"] == 3 and ctx.usage.calls == 6
    assert [n.name for n in ctx.node.children[0].children] == [
        "critique0",
        "refine0",
        "critique1",
        "refine1",
        "critique2",
        "refine2",
    ]


async def test_top_k_candidates_are_critiqued_concurrently():
    backend = ScriptedBackend(arithmetic_critic, delay_s=0.05)
    ctx = Engine({"critic": backend}).context()
    candidates = [cand("#### 41"), cand("#### 41.0"), cand("#### 40"), cand("#### 39")]
    out = await critic(top_k=2).apply(ctx, TASK, candidates)
    assert [c.answer for c in out] == ["42", "42", "41.0", "39"]  # 41.0 is a duplicate of 41, so 40 was picked second
    assert ctx.node.notes["refined"] == [0, 2]
    firsts = [chain.children[0].calls[0] for chain in ctx.node.children]
    assert len(firsts) == 2 and all(c.started_s < min(f.started_s + f.latency_s for f in firsts) for c in firsts)


async def test_approved_candidate_is_kept_and_a_refinement_without_answer_is_dropped():
    def critic_reply(request, _i):
        prompt = request.messages[-1]["content"]
        if prompt.startswith("Review"):
            return "NO PROBLEMS" if "#### 42" in prompt else "Wrong."
        return "I am not sure any more."

    ctx = Engine({"critic": ScriptedBackend(critic_reply)}).context()
    good, bad = cand("#### 42"), cand("#### 41")
    out = await critic(top_k=2, rounds=3).apply(ctx, TASK, [good, bad])
    assert out[0] is good and good.verdicts["crit"]["passed"] and good.verdicts["crit"]["details"]["refinements"] == 0
    assert out[1] is bad and "kept the previous" in bad.verdicts["crit"]["details"]["stop"]
    assert ctx.usage.calls == 3  # good: 1 critique; bad: critique + refine, then stopped
    assert await critic().apply(ctx, TASK, []) == []
