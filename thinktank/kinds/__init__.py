"""Task kinds: one `TaskKind` per kind of answer (code, sql, math, text), found by name.

    kind_of(task).extract(task, reply)          # the program / query / final answer in a reply
    await kind_of(task).grade(resources, problem, answer)

`KINDS` names each kind's class as "module:Class" and `kind_of` imports it on first use, so a run
that only meets math problems never imports the Python sandbox. Adding a kind: a module with a
`TaskKind` subclass, its line here, and its name in `thinktank.tasks.base.Kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from thinktank.exceptions import ConfigError
from thinktank.kinds.base import Key, Reply, TaskKind
from thinktank.problems import TaskInput

__all__ = ["KINDS", "Key", "Reply", "TaskKind", "kind_named", "kind_of"]

#: kind name -> "module:Class" of its `TaskKind`
KINDS: Mapping[str, str] = {
    "code": "thinktank.kinds.code:CodeKind",
    "math": "thinktank.kinds.math:MathKind",
    "sql": "thinktank.kinds.sql:SqlKind",
    "text": "thinktank.kinds.text:TextKind",
}


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
