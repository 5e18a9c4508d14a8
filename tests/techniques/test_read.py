from rag_fixtures import PASSAGES, TASK, passage_candidates, preset_with_given_passages, prompt_of, shown_order

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.techniques._prompting import format_instruction
from thinktank.techniques.base import Candidate
from thinktank.techniques.read import Read, grounded_prompt


def engine(reply=lambda r, i: "Quillmarsh"):
    backend = ScriptedBackend(reply)
    return backend, Engine({"m": backend})


async def test_passages_are_numbered_in_the_order_received_then_question_and_format():
    backend, eng = engine()
    given = passage_candidates([PASSAGES[3], PASSAGES[0], PASSAGES[1]])
    ctx = eng.context()
    out = await Read(["m"]).apply(ctx, TASK, given)
    prompt = prompt_of(backend.requests[0])
    assert shown_order(prompt) == ["p3", "p0", "p1"]
    assert prompt.index("[1] (p3)") < prompt.index("[2] Zorvan Peltrix\n(p0)") < prompt.index("[3] (p1)")
    assert prompt.index("[3]") < prompt.index(f"Question: {TASK.prompt}") < prompt.index(format_instruction(TASK))
    assert [c.answer for c in out] == ["Quillmarsh"] and out[0].node == "read" and out[0].passage is None
    assert ctx.node.notes["passages"] == ["p3", "p0", "p1"]


async def test_k_reads_only_the_first_passages_and_other_candidates_are_ignored():
    backend, eng = engine()
    given = [Candidate("an earlier answer (p4)", "x", "m", "generate"), *passage_candidates()]
    await Read(["m"], k=2).apply(eng.context(), TASK, given)
    assert shown_order(prompt_of(backend.requests[0])) == ["p0", "p1"]


async def test_n_samples_are_seeded_like_generate():
    backend, eng = engine(lambda r, i: f"answer {r.seed}")
    out = await Read(["m"], n=3, temperature=0.7, seed=10).apply(eng.context(), TASK, passage_candidates())
    assert sorted(r.seed for r in backend.requests) == [10, 11, 12]
    assert all(r.temperature == 0.7 for r in backend.requests)
    assert sorted(c.answer for c in out) == ["answer 10", "answer 11", "answer 12"]


async def test_without_passages_the_question_is_asked_closed_book():
    backend, eng = engine()
    ctx = eng.context()
    await Read(["m"]).apply(ctx, TASK, [])
    assert prompt_of(backend.requests[0]) == TASK.prompt
    assert "closed_book" in ctx.node.notes and ctx.node.notes["passages"] == []


def test_long_passages_are_clipped():
    long = PASSAGES[0].__class__("big", "word " * 2000)
    assert "more chars]" in grounded_prompt(TASK, [long]) and len(grounded_prompt(TASK, [long])) < 2500


async def test_rag_single_preset_reads_the_top_5_greedily():
    backend, eng = engine()
    arch = preset_with_given_passages("rag-single", ["m"])
    result = await arch.run(TASK, eng.context())
    assert result.answer.answer == "Quillmarsh" and len(backend.requests) == 1
    assert shown_order(prompt_of(backend.requests[0])) == ["p0", "p1", "p2", "p3", "p4"]
    assert backend.requests[0].temperature == 0.0
