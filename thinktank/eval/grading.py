"""Grade a candidate against a problem's hidden checks (grading only, never at inference)."""

from __future__ import annotations

from thinktank.tasks.base import Problem
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.toolbox import Toolbox


class Grader:
    """Grades with the run's shared verifiers (see `Toolbox`)."""

    def __init__(self, tools: Toolbox | None = None) -> None:
        self.tools = tools or Toolbox()

    async def grade(self, problem: Problem, answer: str | None, text: str) -> Verdict:
        if answer is None:
            return Verdict(False, "no answer could be extracted from the reply")
        hidden = problem.hidden
        if problem.kind == "code":
            return await self.tools.sandbox.check_function(answer, hidden.test_code, problem.input.entry_point or "")
        if problem.kind == "sql":
            return await self.tools.sql.grade(answer, hidden.gold_sql, problem.input.schema or "")
        if problem.kind == "math":
            from thinktank.verifiers.math import MathVerifier

            return MathVerifier().grade(answer, hidden.answer)
        passed = answer.strip().lower() == hidden.answer.strip().lower()
        return Verdict(passed, "exact match" if passed else "differs from the reference answer", float(passed))
