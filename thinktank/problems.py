"""Problems, split into what a technique may see and what only the grader may see.

Plain data at the bottom of the layers: task loaders (`thinktank.tasks`) make them, task kinds
(`thinktank.kinds`) read them, techniques see only the `TaskInput`.

`TaskInput` is the whole of what an architecture receives at inference time: the prompt
and the *public* checks. `HiddenChecks` stay with the `Problem` and are handed only to
the grader, so a technique cannot peek at the answer even by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: a task kind's name: a key of `thinktank.kinds.KINDS` (checked where problems come in, see `kinds.KindName`)
Kind = str


@dataclass(frozen=True)
class TaskInput:
    problem_id: str
    kind: Kind
    prompt: str  # the full user message the model sees
    entry_point: str | None = None  # code: the function to implement
    public_tests: tuple[str, ...] = ()  # code: assert statements usable at inference time
    schema: str | None = None  # sql: the schema text ("Table: t. Columns: ...")
    corpus: str | None = None  # qa: the corpus to retrieve from (a directory of .txt/.md files or a passages JSONL)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HiddenChecks:
    """Grading material; never passed to a technique.

    One field per kind of reference, each read only by its own kind's `grade` (`thinktank.kinds`): a flat record
    keeps problems plain data (JSONL lines, the run store) without a class per kind.
    """

    test_code: str = ""  # code: source defining `check(candidate)` (HumanEval style)
    gold_sql: str = ""  # sql: the reference query
    answer: str = ""  # math/text/qa: the reference final answer
    aliases: tuple[str, ...] = ()  # qa: other answers graded as correct
    gold_passages: tuple[str, ...] = ()  # qa: ids of the passages that support the answer (retriever recall@k)


@dataclass(frozen=True)
class Passage:
    """One retrieved unit of a corpus: what a retrieval step passes to the techniques after it."""

    id: str  # stable within its corpus (file path relative to the corpus, or the JSONL line's id)
    text: str
    title: str = ""
    score: float = 0.0  # the retriever's (or a reranker's) score; higher is better


@dataclass(frozen=True)
class Problem:
    input: TaskInput
    hidden: HiddenChecks

    @property
    def id(self) -> str:
        return self.input.problem_id

    @property
    def kind(self) -> Kind:
        return self.input.kind
