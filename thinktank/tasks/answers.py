"""Extract the artefact a candidate stands for (program, SQL, final answer): the task's kind knows how."""

from __future__ import annotations

from thinktank.kinds import kind_of
from thinktank.problems import TaskInput


def extract(task: TaskInput, text: str) -> str | None:
    return kind_of(task).extract(task, text)
