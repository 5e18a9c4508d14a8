"""Problems, split into what a technique may see and what only the grader may see.

`TaskInput` is the whole of what an architecture receives at inference time: the prompt
and the *public* checks. `HiddenChecks` stay with the `Problem` and are handed only to
the grader, so a technique cannot peek at the answer even by accident.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

#: names of the task kinds; each has its `TaskKind` strategy in `thinktank.kinds.KINDS`
Kind = Literal["code", "sql", "math", "text"]


@dataclass(frozen=True)
class TaskInput:
    problem_id: str
    kind: Kind
    prompt: str  # the full user message the model sees
    entry_point: str | None = None  # code: the function to implement
    public_tests: tuple[str, ...] = ()  # code: assert statements usable at inference time
    schema: str | None = None  # sql: the schema text ("Table: t. Columns: ...")
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HiddenChecks:
    """Grading material; never passed to a technique.

    One field per kind of reference, each read only by its own kind's `grade` (`thinktank.kinds`): a flat record
    keeps problems plain data (JSONL lines, the run store) without a class per kind.
    """

    test_code: str = ""  # code: source defining `check(candidate)` (HumanEval style)
    gold_sql: str = ""  # sql: the reference query
    answer: str = ""  # math/text: the reference final answer


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


class Task(ABC):
    """A named, ordered, offline collection of problems."""

    name: str
    kind: Kind

    @abstractmethod
    def problems(self) -> Iterator[Problem]:
        """Problems in a fixed order (seeded where generated)."""

    def load(self, limit: int | None = None, offset: int = 0, *, sample: int | None = None, seed: int = 0) -> list[Problem]:
        """Problems [offset, offset+limit), or with `sample` the first `sample` of a seeded shuffle of them."""
        if sample is not None:
            return seeded_shuffle(self.load(limit, offset), seed)[:sample]
        out: list[Problem] = []
        for i, problem in enumerate(self.problems()):
            if i < offset:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(problem)
        return out


def seeded_shuffle(problems: list[Problem], seed: int) -> list[Problem]:
    """A fixed permutation: `eval --sample N --seed S` takes its first N, `search` its dev then test split."""
    order = list(problems)
    random.Random(seed).shuffle(order)
    return order
