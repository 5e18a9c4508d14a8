"""Task names → task factories, imported lazily so one missing or broken task module cannot break the others.

>>> get_task("gsm-symbolic", n=5, seed=1)  # doctest: +SKIP
>>> get_task("my_problems.jsonl")          # a path to a JSONL file works as a name too
>>> get_task("my_package.tasks:MyTask")    # a user's Task subclass, by import path  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from thinktank.exceptions import ConfigError, UnknownTaskError
from thinktank.plugins import is_import_path, resolve_class
from thinktank.tasks.base import Problem, Task

__all__ = ["get_task", "load_problems", "task_names"]

_REGISTRY: dict[str, str] = {
    "gsm-symbolic": "thinktank.tasks.gsm_symbolic:GsmSymbolicTask",
    "humaneval": "thinktank.tasks.humaneval:HumanEvalTask",
    "jsonl": "thinktank.tasks.jsonl:JsonlTask",
    "rag-synth": "thinktank.tasks.rag_synth:RagSynthTask",
    "rag-synth-positioned": "thinktank.tasks.rag_synth:RagSynthPositionedTask",
    "spider": "thinktank.tasks.spider:SpiderTask",
}


def task_names() -> list[str]:
    """Every registered name, sorted (a name is listed even if its module fails to import)."""
    return sorted(_REGISTRY)


def _resolve(name: str) -> type[Task]:
    module_name, _, attr = _REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"task {name!r} is registered but {module_name} cannot be imported: {exc}") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise ConfigError(f"task {name!r} is registered but {module_name} has no {attr}")
    return factory


def get_task(name: str, /, **options: Any) -> Task:
    """Build the task called `name` with `options` as keyword arguments.

    A name ending in ".jsonl" is read as a path: `get_task("x.jsonl")` == `get_task("jsonl", path="x.jsonl")`.
    """
    if name.endswith(".jsonl") and name not in _REGISTRY:
        options = {"path": name, **options}
        name = "jsonl"
    if is_import_path(name) and name not in _REGISTRY:
        factory = resolve_class(name, Task, what="task")  # type: ignore[type-abstract]
    elif name not in _REGISTRY:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(task_names())}"
            " (or a path ending in .jsonl, or a 'package.module:Class' path)"
        )
    else:
        factory = _resolve(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for task {name!r}: {exc}") from exc


def load_problems(
    name: str, /, *, seed: int = 0, limit: int | None = None, offset: int = 0, sample: int | None = None
) -> list[Problem]:
    """The problems a command runs on: the one place that knows a generated task needs its seed and size.

    `eval --sample N --seed S` and `search --seed S` (dev + test = the first N of the same seeded shuffle) both load
    through here, so they see the same problems.
    """
    options: dict[str, Any] = {}
    if name == "gsm-symbolic":  # generated problems: the seed picks them, the slice sizes them
        from thinktank.tasks.gsm_symbolic import generation_options

        options = generation_options(seed, offset + (limit or 0))
    elif name in ("rag-synth", "rag-synth-positioned"):
        from thinktank.tasks.rag_synth import generation_options as rag_options

        options = rag_options(seed, offset + (limit or 0))
    return get_task(name, **options).load(limit=limit, offset=offset, sample=sample, seed=seed)
