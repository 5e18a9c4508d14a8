"""Math word problems: a final answer ("#### 42", "\\boxed{42}"), equal when its value is (`canonical_answer`).

"#### 42", "The answer is 42.0" and "\\boxed{42}" give the same key, so they vote together. A reply is keyed by the answer
found in its text; a candidate whose answer was computed rather than written (a `program` candidate: its `program`
is set and its `answer` is the value the program returned) by that value, so answers written in prose and values
computed by programs vote together. No public checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import Problem, TaskInput
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.math import MathVerifier, answer_key, canonical_answer, extract_answer

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["MathKind"]


class MathKind(TaskKind):
    name = "math"
    answer_format = 'Reason briefly, then end with a final line "#### <answer>".'

    def extract(self, task: TaskInput, text: str) -> str | None:
        return extract_answer(text)

    async def answer_keys(
        self, resources: Resources, task: TaskInput, candidates: Sequence[Reply], memo: dict[str, Key]
    ) -> list[Key]:
        return [
            answer_key(c.answer) if getattr(c, "program", None) is not None  # a computed value: nothing to extract
            else canonical_answer(c.text) if c.text.strip() else canonical_answer(c.answer)
            for c in candidates
        ]  # fmt: skip

    def distinct_answer(self, answer: str) -> str:
        return "math:" + (canonical_answer(answer) or answer.strip())

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        return await resources.get(MathVerifier).check(answer, problem.hidden.answer)
