"""Extract the artefact a candidate stands for (program, SQL, final answer) by task kind."""

from __future__ import annotations

from thinktank.tasks.base import TaskInput


def extract(task: TaskInput, text: str) -> str | None:
    if task.kind == "code":
        from thinktank.tasks.humaneval import extract_code

        return extract_code(text, task.entry_point or "", task.meta.get("code_prompt", ""))
    if task.kind == "sql":
        from thinktank.verifiers.sql import extract_sql

        return extract_sql(text)
    if task.kind == "math":
        from thinktank.verifiers.math import extract_answer

        return extract_answer(text)
    return text.strip() or None
