"""Task kinds: one `TaskKind` per kind of answer (code, sql, math, qa, text), found by name.

    kind_of(task).extract(task, reply)          # the program / query / final answer in a reply
    await kind_of(task).grade(resources, problem, answer)

`KINDS` names each kind's class as "module:Class" and `kind_of` imports it on first use, so a run
that only meets math problems never imports the Python sandbox. Adding a kind: a module with a
`TaskKind` subclass and its line here; task files and served requests accept its name from then
on (`KindName`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

from thinktank.exceptions import ConfigError
from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import TaskInput

__all__ = ["KINDS", "Key", "KindName", "Reply", "TaskKind", "kind_named", "kind_of", "known_kind"]

#: kind name -> "module:Class" of its `TaskKind`
KINDS: Mapping[str, str] = {
    "code": "thinktank.kinds.code:CodeKind",
    "math": "thinktank.kinds.math:MathKind",
    "qa": "thinktank.kinds.qa:QaKind",
    "sql": "thinktank.kinds.sql:SqlKind",
    "text": "thinktank.kinds.text:TextKind",
}


def known_kind(name: str) -> str:
    """`name` if it is a registered kind; a ValueError naming the known ones otherwise (for pydantic fields)."""
    if name not in KINDS:
        raise ValueError(f"unknown task kind {name!r}; known: {', '.join(sorted(KINDS))}")
    return name


#: a kind name in a pydantic model (a task file's line, a served request): any key of `KINDS`
KindName = Annotated[str, AfterValidator(known_kind)]


def kind_named(name: str, kinds: Mapping[str, str] | None = None) -> TaskKind:
    """The kind called `name` in `kinds` (default: `KINDS`), imported now if it was not yet."""
    kinds = KINDS if kinds is None else kinds
    if name not in kinds:
        raise ConfigError(f"unknown task kind {name!r}; known: {', '.join(sorted(kinds))}")
    module, _, qualname = kinds[name].partition(":")
    found = getattr(importlib.import_module(module), qualname)
    if not (isinstance(found, type) and issubclass(found, TaskKind)):
        raise ConfigError(f"{kinds[name]} (kind {name!r}) is not a TaskKind subclass")
    return found()


def kind_of(task: TaskInput, kinds: Mapping[str, str] | None = None) -> TaskKind:
    """The kind of `task`: the strategy every technique, the grader, the pool and the replay ask."""
    return kind_named(task.kind, kinds)
