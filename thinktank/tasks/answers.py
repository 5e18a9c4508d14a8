"""Extract the artefact a candidate stands for (program, SQL, final answer): the task's kind knows how."""

from __future__ import annotations

from thinktank.tasks.base import TaskInput


def extract(task: TaskInput, text: str) -> str | None:
    from thinktank.kinds import kind_of  # kinds build on tasks.base: import at call time, not at load

    return kind_of(task).extract(task, text)
