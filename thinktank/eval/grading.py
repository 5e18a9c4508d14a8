"""Grade a candidate against a problem's hidden checks (grading only, never at inference)."""

from __future__ import annotations

from typing import Any

from thinktank.tasks.base import Problem
from thinktank.verifiers.base import Verdict


class Grader:
    """Holds one verifier per kind, created on first use and shared by all problems."""

    def __init__(self, **verifier_options: Any) -> None:
        self._options = verifier_options
        self._sandbox: Any = None
        self._sql: Any = None
        self._math: Any = None

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            from thinktank.verifiers.python_sandbox import PythonSandbox

            self._sandbox = PythonSandbox()
        return self._sandbox

    @property
    def sql(self) -> Any:
        if self._sql is None:
            from thinktank.verifiers.sql import SqlVerifier

            self._sql = SqlVerifier()
        return self._sql

    async def grade(self, problem: Problem, answer: str | None, text: str) -> Verdict:
        if answer is None:
            return Verdict(False, "no answer could be extracted from the reply")
        hidden = problem.hidden
        if problem.kind == "code":
            verdict: Verdict = await self.sandbox.check_function(answer, hidden.test_code, problem.input.entry_point or "")
            return verdict
        if problem.kind == "sql":
            verdict = await self.sql.grade(answer, hidden.gold_sql, problem.input.schema or "")
            return verdict
        if problem.kind == "math":
            from thinktank.verifiers.math import MathVerifier

            return MathVerifier().grade(answer, hidden.answer)
        passed = answer.strip().lower() == hidden.answer.strip().lower()
        return Verdict(passed, "exact match" if passed else "differs from the reference answer", float(passed))
