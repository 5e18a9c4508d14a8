"""A user's own problems, one JSON object per line (schema in docs/tasks.md).

A line is either the general form (`id`, `kind`, `prompt`, `hidden`, ...) or the short QA form, told apart by its
`question` field: `{"corpus": "docs/", "question": "...", "answers": ["main", "alias", ...], "gold_passages": [...]}`.
A relative `corpus` is read from the JSONL file's directory.

Lines are validated when the task is constructed, so a bad file fails before any model is called,
with the file, line number and field in the message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from thinktank.exceptions import TaskDataError
from thinktank.kinds import KindName, kind_named
from thinktank.tasks.base import HiddenChecks, Kind, Problem, Task, TaskInput

__all__ = ["JsonlTask", "load_jsonl_problems"]


class _Hidden(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_code: str = ""
    gold_sql: str = ""
    answer: str = ""
    aliases: list[str] = Field(default_factory=list)
    gold_passages: list[str] = Field(default_factory=list)

    @field_validator("answer", mode="before")
    @classmethod
    def _number_to_text(cls, value: Any) -> Any:
        return _text(value)

    @field_validator("aliases", mode="before")
    @classmethod
    def _numbers_to_text(cls, value: Any) -> Any:
        return [_text(v) for v in value] if isinstance(value, list) else value

    def checks(self) -> HiddenChecks:
        return HiddenChecks(
            test_code=self.test_code,
            gold_sql=self.gold_sql,
            answer=self.answer,
            aliases=tuple(self.aliases),
            gold_passages=tuple(self.gold_passages),
        )


def _text(value: Any) -> Any:
    """Numbers written as JSON numbers are answers too ("answer": 12)."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _corpus_path(value: str | None, info: ValidationInfo) -> str | None:
    """A corpus path made absolute against the JSONL file's directory; it must exist (a file or a directory)."""
    if value is None:
        return None
    base = (info.context or {}).get("base", Path.cwd())
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not path.exists():
        raise ValueError(f"corpus {str(path)!r} does not exist (a relative path is read from the task file's directory)")
    return str(path.resolve())


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(min_length=1)
    kind: KindName
    prompt: str = Field(min_length=1)
    entry_point: str | None = None
    public_tests: list[str] = Field(default_factory=list)
    db_schema: str | None = Field(default=None, alias="schema")
    corpus: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    hidden: _Hidden

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _corpus_path(value, info)

    @model_validator(mode="after")
    def _kind_needs(self) -> _Line:
        """Each kind must carry what its grader needs, or every answer would be graded as wrong."""
        lacking = kind_named(self.kind).lacks(self.task_input(), self.hidden.checks())
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
            corpus=self.corpus,
            meta=dict(self.meta),
        )

    def problem(self) -> Problem:
        return Problem(self.task_input(), self.hidden.checks())


class _QaLine(BaseModel):
    """The short form of a retrieval-QA problem: kind "qa", prompt = the question, answers[0] the answer."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1)
    corpus: str
    question: str = Field(min_length=1)
    answers: list[str]
    gold_passages: list[str] = Field(default_factory=list)
    cite: bool = False  # ask for citations; the public check then wants a cited id of the corpus
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _corpus_path(value, info)

    @model_validator(mode="before")
    @classmethod
    def _has_answers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            answers = data.get("answers")
            if not isinstance(answers, list) or not answers:
                raise ValueError("a QA line needs 'answers': a non-empty list (the first is the answer, the rest aliases)")
            data = {**data, "answers": [_text(a) for a in answers]}
        return data

    @field_validator("answers")
    @classmethod
    def _no_blank_answer(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the first answer is blank")
        return value

    def problem(self, default_id: str) -> Problem:
        meta = {**self.meta, **({"cite": True} if self.cite else {})}
        task_input = TaskInput(self.id or default_id, "qa", self.question, corpus=self.corpus, meta=meta)
        hidden = HiddenChecks(answer=self.answers[0], aliases=tuple(self.answers[1:]), gold_passages=tuple(self.gold_passages))
        return Problem(task_input, hidden)


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
                record = json.loads(raw)
                context = {"base": path.parent}
                if isinstance(record, dict) and "question" in record and "kind" not in record:
                    problem = _QaLine.model_validate(record, context=context).problem(f"{path.stem}/{number}")
                else:
                    problem = _Line.model_validate(record, context=context).problem()
            except json.JSONDecodeError as exc:
                raise TaskDataError(f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
            except ValidationError as exc:
                raise TaskDataError(f"{path}:{number}: {_describe(exc)}") from exc
            if problem.id in seen:
                raise TaskDataError(f"{path}:{number}: field 'id': {problem.id!r} already used on line {seen[problem.id]}")
            seen[problem.id] = number
            problems.append(problem)
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
