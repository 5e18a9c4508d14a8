"""The task contract: a named, ordered, offline collection of `Problem`s (defined in `thinktank.problems`)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator

from thinktank.problems import HiddenChecks, Kind, Problem, TaskInput

__all__ = ["HiddenChecks", "Kind", "Problem", "Task", "TaskInput", "seeded_shuffle"]


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
