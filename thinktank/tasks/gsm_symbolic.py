"""GSM-symbolic: grade-school word problems generated from reasoning-gym's 100 GSM8K-derived templates.

Only the two generator files are taken from the `reasoning-gym==0.1.25` wheel (installing it would pull
in many pinned dependencies). They were read before being trusted: they import only the standard
library plus two small formatting helpers from `reasoning_gym.utils`, which are provided here by a
shim, and their only `eval` calls parse fixed fraction literals such as "1/4". The files are pinned
by sha256, so a changed file in the cache is refused instead of executed.

A problem is fully determined by (template, seed), which is also its id: `gsm-symbolic/<template>/<seed>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import sys
import types
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import cache
from random import Random
from typing import Any

from thinktank._packages import extract_member
from thinktank._paths import cache_dir
from thinktank.exceptions import ConfigError, TaskDataError
from thinktank.tasks.base import HiddenChecks, Problem, Task, TaskInput

__all__ = ["DEFAULT_N", "TEMPLATES", "GsmSymbolicTask", "generate_example", "generation_options"]

_REQUIREMENT = "reasoning-gym==0.1.25"
_MEMBERS = {
    "generators_00_49.py": "78b85da5a9225fec76d7fc27e1bad207b0dfb58b386d5e3c1089b9542c04b1e7",
    "generators_50_99.py": "29e28c60ac623defb0acabdbf568771b4f43abb75027d2432c368d670ff4889e",
}
# The templates reasoning-gym 0.1.25 itself serves (`tasks_ok`); the other 15 are marked there as needing fixes.
TEMPLATES: tuple[int, ...] = tuple(sorted({*range(100)} - {32, 35, 37, 61, 63, 65, 74, 76, 77, 79, 86, 87, 90, 97, 98}))
_INSTRUCTION = (
    'Solve the problem step by step. On the last line, write the final answer as "#### <number>" (the number only, no units).'
)


def _format_number(num: float, max_decimals: int = 2, round_if_needed: bool = False) -> str:
    """Stand-in for reasoning_gym.utils.format_number: integers plainly, others with at most `max_decimals`."""
    if isinstance(num, int) or float(num).is_integer():
        return str(int(num))
    text = f"{num:.{max_decimals}f}".rstrip("0").rstrip(".")
    if not round_if_needed and not math.isclose(float(text), num, rel_tol=1e-9):
        raise ValueError(f"{num} needs more than {max_decimals} decimals")
    return text


def _is_integer(obj: Any) -> bool:
    """Stand-in for reasoning_gym.utils.is_integer."""
    if isinstance(obj, Fraction):
        return obj.denominator == 1
    if isinstance(obj, (int, float)):
        return isinstance(obj, int) or obj.is_integer()
    return False


@contextlib.contextmanager
def _reasoning_gym_shim() -> Iterator[None]:
    """Make `from reasoning_gym.utils import ...` resolve to our helpers, only while the generators load."""
    if "reasoning_gym" in sys.modules:  # the real package is installed: let it serve its own helpers
        yield
        return
    package, utils = types.ModuleType("reasoning_gym"), types.ModuleType("reasoning_gym.utils")
    utils.format_number, utils.is_integer = _format_number, _is_integer  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules.update({"reasoning_gym": package, "reasoning_gym.utils": utils})
    try:
        yield
    finally:
        sys.modules.pop("reasoning_gym", None)
        sys.modules.pop("reasoning_gym.utils", None)


@cache
def _generators() -> dict[int, Callable[[Random, float], dict[str, Any]]]:
    out: dict[int, Callable[[Random, float], dict[str, Any]]] = {}
    for member, sha256 in _MEMBERS.items():
        path = extract_member(
            _REQUIREMENT, f"reasoning_gym/arithmetic/gsm_symbolic/{member}", cache_dir("data", "gsm_symbolic") / member
        )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != sha256:
            raise TaskDataError(f"{path} has sha256 {digest}, expected {sha256}; delete it to fetch it again")
        spec = importlib.util.spec_from_file_location(f"thinktank._gsm_symbolic_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise TaskDataError(f"cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(spec)
        with _reasoning_gym_shim():
            spec.loader.exec_module(module)
        for attr, value in vars(module).items():
            if attr.startswith("generate_") and attr[len("generate_") :].isdigit():
                out[int(attr[len("generate_") :])] = value
    return out


def generate_example(template: int, seed: int) -> dict[str, Any]:
    """The raw generator output for one problem: question, answer and (grader-only) metadata."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown gsm-symbolic template {template}; valid: 0..99 except those reasoning-gym marks broken")
    return _generators()[template](Random(seed), 1.0)


def _problem(template: int, seed: int) -> Problem:
    example = generate_example(template, seed)
    task_input = TaskInput(
        problem_id=f"gsm-symbolic/{template}/{seed}",
        kind="math",
        prompt=f"{example['question'].strip()}\n\n{_INSTRUCTION}",
        meta={"template": template, "seed": seed, "source": _REQUIREMENT},
    )
    return Problem(task_input, HiddenChecks(answer=str(example["answer"])))


#: problems generated unless a slice needs more: every command that loads the task without an explicit n (eval's
#: --limit/--offset/--sample, search's dev/test split) then sees the same seeded problems
DEFAULT_N = 100


def generation_options(seed: int, needed: int = 0) -> dict[str, Any]:
    """`GsmSymbolicTask` options for a run: the seed picks the problems, `needed` (offset + limit) sizes them."""
    return {"seed": seed, "n": max(DEFAULT_N, needed)}


class GsmSymbolicTask(Task):
    """`n` seeded problems, templates interleaved so any prefix covers many templates.

    >>> [p.id for p in GsmSymbolicTask(n=2, seed=0).problems()]  # doctest: +SKIP
    ['gsm-symbolic/27/...', 'gsm-symbolic/60/...']
    """

    name = "gsm-symbolic"
    kind = "math"

    def __init__(self, n: int = DEFAULT_N, seed: int = 0, templates: tuple[int, ...] | list[int] | None = None) -> None:
        if n < 0:
            raise ConfigError(f"gsm-symbolic: n must be >= 0, got {n}")
        chosen = tuple(templates) if templates is not None else TEMPLATES
        unknown = sorted(set(chosen) - set(TEMPLATES))
        if unknown or not chosen:
            raise ConfigError(f"gsm-symbolic: unknown or broken templates {unknown or '(none given)'}")
        self.n, self.seed, self.templates = n, seed, chosen

    def problems(self) -> Iterator[Problem]:
        order = list(self.templates)
        Random(f"gsm-symbolic/order/{self.seed}").shuffle(order)
        seeds = Random(f"gsm-symbolic/seeds/{self.seed}")
        for i in range(self.n):
            yield _problem(order[i % len(order)], seeds.randrange(10**9))
