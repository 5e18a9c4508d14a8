"""The qa kind on real replies (SmolLM2-135M): rag-synth questions closed-book, and with the gold passage in the prompt.

Mechanics, not accuracy: real replies yield short answers, votes group them by normalised answer, grades carry EM
and F1. The two accuracy facts checked are the benchmark's premises: closed-book the invented world is unknown
(nothing right), and with the gold passage shown the model can copy an answer out of it.
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
from thinktank.verifiers.qa import normalize_answer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THINKTANK_CACHE", str(tmp_path_factory.mktemp("cache")))
        return [p for p in RagSynthTask(seed=0).load(limit=20) if p.input.prompt.startswith("In which year was")][:3]


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


async def test_with_the_gold_passage_shown_the_answer_is_copied_out(small_server, problems):
    spec = {"layers": [{"generate": {"n": 1, "temperature": 0.0, "max_tokens": 32}}]}
    solved = await solve(small_server, [open_book(p) for p in problems], spec)
    assert sum(verdict.passed for _, _, verdict in solved) >= 2, [(r.answer.text if r.answer else None) for r, _, _ in solved]
    assert all(verdict.details["f1"] == verdict.score for _, _, verdict in solved)
