"""A user's plug-in module, outside thinktank: a technique and a task named in YAML / CLI as `plugin_example:Class`."""

from thinktank.tasks.base import HiddenChecks, Problem, Task, TaskInput
from thinktank.techniques.base import Candidate, Technique


class Shout(Technique):
    """Upper-cases every candidate's answer; its one parameter is validated like a shipped technique's."""

    def __init__(self, suffix: str = "!") -> None:
        self.suffix = suffix

    async def apply(self, ctx, task, candidates):
        return [Candidate(c.text, (c.answer or "").upper() + self.suffix, c.model, self.name) for c in candidates]


class TinyTask(Task):
    name = "tiny"
    kind = "math"

    def __init__(self, n: int = 2) -> None:
        self.n = n

    def problems(self):
        for i in range(self.n):
            yield Problem(TaskInput(f"tiny/{i}", "math", f"What is {i}+1?"), HiddenChecks(answer=str(i + 1)))


NOT_A_CLASS = 42
