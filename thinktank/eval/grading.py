"""Grade a candidate against a problem's hidden checks (grading only, never at inference)."""

from __future__ import annotations

from thinktank.engine.resources import Resources
from thinktank.kinds import kind_of
from thinktank.tasks.base import Problem
from thinktank.verifiers.base import Verdict


class Grader:
    """Grades with the run's shared verifiers (pass the engine's `resources`); the problem's kind knows how."""

    def __init__(self, resources: Resources | None = None) -> None:
        self.resources = resources or Resources()

    async def grade(self, problem: Problem, answer: str | None) -> Verdict:
        if answer is None:
            return Verdict(False, "no answer could be extracted from the reply")
        return await kind_of(problem.input).grade(self.resources, problem, answer)
