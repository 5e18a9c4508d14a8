"""Free text: the reply is the answer, graded by case-insensitive exact match."""

from __future__ import annotations

from typing import TYPE_CHECKING

from thinktank.kinds.base import TaskKind
from thinktank.problems import Problem
from thinktank.verifiers.base import Verdict

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["TextKind"]


class TextKind(TaskKind):
    name = "text"

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        passed = answer.strip().lower() == problem.hidden.answer.strip().lower()
        return Verdict(passed, "exact match" if passed else "differs from the reference answer", float(passed))
