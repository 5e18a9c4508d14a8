"""A toy kind for the registry tests: a whole new kind of task is this one module plus one `KINDS` line.

Yes/no questions: the answer is the reply's first "yes" or "no", graded against `hidden.answer`.
"""

from __future__ import annotations

import re

from thinktank.engine.resources import Resources
from thinktank.kinds.base import TaskKind
from thinktank.tasks.base import Problem, TaskInput
from thinktank.verifiers.base import Verdict


class YesNoKind(TaskKind):
    name = "yesno"
    answer_format = "Answer yes or no."

    def extract(self, task: TaskInput, text: str) -> str | None:
        found = re.search(r"\b(yes|no)\b", text, re.IGNORECASE)
        return found.group(1).lower() if found else None

    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        passed = answer == problem.hidden.answer
        return Verdict(passed, "right" if passed else "wrong", float(passed))
