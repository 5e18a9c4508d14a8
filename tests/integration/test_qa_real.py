"""The qa kind on real replies (SmolLM2-135M): rag-synth questions closed-book, and with the gold passage in the prompt.

Mechanics, not accuracy: real replies yield short answers, votes group them by normalised answer, grades carry EM
and F1. One accuracy fact is checked, the benchmark's premise: closed-book the invented world is unknown (nothing
right). (SmolLM2-135M does not reliably copy a year out of a passage shown to it, so open-book accuracy is not.)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from thinktank.arch import build_architecture
from thinktank.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.kinds import kind_of
from thinktank.kinds.qa import strip_citations
from thinktank.tasks.rag_synth import RagSynthTask
from thinktank.verifiers.qa import exact_match, normalize_answer, token_f1

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THINKTANK_CACHE", str(tmp_path_factory.mktemp("cache")))
        single = [p for p in RagSynthTask(seed=0).load(limit=40) if p.input.meta["hops"] == 1]
        return [p for p in single if p.input.prompt.startswith("In which year was")][:3]


def open_book(problem):
    """The gold passage before the question, and the kind's answer format after it."""
    corpus = {json.loads(line)["id"]: json.loads(line) for line in Path(problem.input.corpus).read_text().splitlines()}
    passage = corpus[problem.hidden.gold_passages[-1]]["text"]
    task = problem.input
    prompt = f"Passage: {passage}\n\nQuestion: {task.prompt}\n{kind_of(task).format_instruction(task)}"
    return dataclasses.replace(problem, input=dataclasses.replace(task, prompt=prompt))


async def solve(small_server, problems, spec):
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        grader = Grader(engine.resources)
        arch = build_architecture(spec, [small_server.model])
        out = []
        for problem in problems:
            ctx = engine.context()
            result = await arch.run(problem.input, ctx)
            assert result.error is None, result.error
            verdict = await grader.grade(problem, result.answer.answer if result.answer else None)
            out.append((result, ctx, verdict))
        return out


async def test_closed_book_nothing_is_known_and_votes_group_by_normalised_answer(small_server, problems):
    assert len(problems) == 3
    spec = {"layers": [{"generate": {"n": 4, "temperature": 0.8, "max_tokens": 48}}, {"vote": {}}]}
    solved = await solve(small_server, problems, spec)
    for result, ctx, verdict in solved:
        assert all(c.answer for c in result.candidates)  # a short answer read out of every real reply
        assert not verdict.passed and {"em", "f1"} <= set(verdict.details)
        groups = next(n for n in ctx.node.walk() if n.name == "vote1").notes["groups"]
        keys = [normalize_answer(strip_citations(c.answer or "")) for c in result.candidates]
        assert sum(g["size"] for g in groups) == sum(map(bool, keys)) and len(groups) == len(set(filter(None, keys)))


async def test_open_book_replies_are_read_as_short_answers_and_graded_by_em_and_f1(small_server, problems):
    spec = {"layers": [{"generate": {"n": 1, "temperature": 0.0, "max_tokens": 32}}]}
    shown = [open_book(p) for p in problems]
    assert all(p.hidden.answer in p.input.prompt for p in shown)  # the gold passage is in the prompt
    solved = await solve(small_server, shown, spec)
    for (result, _, verdict), problem in zip(solved, shown, strict=True):
        reply, answer = result.answer.text, result.answer.answer
        assert answer and "[" not in answer and len(answer) <= len(reply.strip())  # e.g. 'The answer is "2018"' -> 2018
        assert verdict.passed == exact_match(answer, problem.hidden.answer)
        assert verdict.score == verdict.details["f1"] == token_f1(answer, problem.hidden.answer)
