"""A user's own problems, one JSON object per line (schema in docs/tasks.md).

Lines are validated when the task is constructed, so a bad file fails before any model is called,
with the file, line number and field in the message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from thinktank.exceptions import TaskDataError
from thinktank.kinds import KindName, kind_named
from thinktank.tasks.base import HiddenChecks, Kind, Problem, Task, TaskInput

__all__ = ["JsonlTask", "load_jsonl_problems"]


class _Hidden(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_code: str = ""
    gold_sql: str = ""
    answer: str = ""

    @field_validator("answer", mode="before")
    @classmethod
    def _number_to_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(min_length=1)
    kind: KindName
    prompt: str = Field(min_length=1)
    entry_point: str | None = None
    public_tests: list[str] = Field(default_factory=list)
    db_schema: str | None = Field(default=None, alias="schema")
    meta: dict[str, Any] = Field(default_factory=dict)
    hidden: _Hidden

    @model_validator(mode="after")
    def _kind_needs(self) -> _Line:
        """Each kind must carry what its grader needs, or every answer would be graded as wrong."""
        lacking = kind_named(self.kind).lacks(self.task_input(), HiddenChecks(**self.hidden.model_dump()))
        if lacking:
            raise ValueError(lacking)
        return self

    def task_input(self) -> TaskInput:
        return TaskInput(
            problem_id=self.id,
            kind=self.kind,
            prompt=self.prompt,
            entry_point=self.entry_point,
            public_tests=tuple(self.public_tests),
            schema=self.db_schema,
            meta=dict(self.meta),
        )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"field {where!r}: {message}{more}" if where else f"{message}{more}"


def load_jsonl_problems(path: str | Path) -> list[Problem]:
    """Parse and validate every line of `path`; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise TaskDataError(f"task file not found: {path}")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = _Line.model_validate(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
            except ValidationError as exc:
                raise TaskDataError(f"{path}:{number}: {_describe(exc)}") from exc
            if line.id in seen:
                raise TaskDataError(f"{path}:{number}: field 'id': {line.id!r} already used on line {seen[line.id]}")
            seen[line.id] = number
            problems.append(Problem(line.task_input(), HiddenChecks(**line.hidden.model_dump())))
    return problems


class JsonlTask(Task):
    """Problems from a JSONL file, in file order. `kind` is the kind of the first line; each problem
    carries its own kind, so a file may mix kinds."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        self._problems = load_jsonl_problems(self.path)
        self.name = name or self.path.stem
        self.kind: Kind = self._problems[0].kind if self._problems else "text"

    def problems(self) -> Iterator[Problem]:
        return iter(self._problems)
