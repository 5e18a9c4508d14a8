"""Run directories for the dashboard tests, written by the real eval runner (ScriptedBackend) and search report writer."""

from __future__ import annotations

from pathlib import Path

from thinktank.arch import load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.search.outcome import SearchOutcome, TrialResult, pareto_front
from thinktank.search.report import write_report
from thinktank.search.space import Config, Stage
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput


def math_problems(count: int) -> list[Problem]:
    return [
        Problem(TaskInput(f"q{i}", "math", f"What is {i} + {i}? End with #### <number>."), HiddenChecks(answer=str(2 * i)))
        for i in range(count)
    ]


def solver(wrong: set[int]):
    """Right on every problem except those in `wrong`; reads i from the prompt."""

    def reply(request, index):
        i = int(request.messages[-1]["content"].split()[2])
        return f"#### {2 * i + (1 if i in wrong else 0)}"

    return reply


async def eval_run(run_dir: Path, wrong: set[int], *, count: int = 8, arch: str = "single", task: str = "adder") -> RunStore:
    """A finished eval run; returns its (closed) store's directory owner for reading back in tests."""
    store = RunStore(run_dir)
    store.bind_config({"task": task, "arch": arch, "models": ["m"]})
    await run_eval(Engine({"m": ScriptedBackend(solver(wrong))}), load_architecture(arch, ["m"]), math_problems(count), store)
    store.close()
    return store


OFF_BY_TWO = "def inc(x):\n    return x + 2\n"
OFF_BY_THREE = "def inc(x):\n    return x + 3\n"
FIXED = "def inc(x):\n    return x + 1\n"


def _fence(code: str) -> str:
    return f"Here you go:\n```python\n{code}```"


def repairing_model(request, index):
    """Wrong at first; repaired in two rounds once shown what the function returned (repair-3 preset)."""
    prompt = request.messages[-1]["content"]
    if "Your function returned: 4" in prompt:
        return _fence(FIXED)
    if "Your function returned: 3" in prompt:
        return _fence(OFF_BY_THREE)
    return _fence(OFF_BY_TWO)


async def repair_run(run_dir: Path) -> None:
    task = TaskInput("inc/0", "code", "Write inc(x) returning x + 1.", entry_point="inc",
                     public_tests=("assert inc(1) == 2", "assert inc(3) == 4"))  # fmt: skip
    hidden = HiddenChecks(test_code="def check(candidate):\n    for x in (1, 5, -2):\n        assert candidate(x) == x + 1\n")
    store = RunStore(run_dir)
    store.bind_config({"task": "inc", "arch": "repair-3", "models": ["m"]})
    engine = Engine({"m": ScriptedBackend(repairing_model)})
    await run_eval(engine, load_architecture("repair-3", ["m"]), [Problem(task, hidden)], store)
    store.close()


def search_run(run_dir: Path) -> SearchOutcome:
    """A search report (pareto.json) written by `write_report` over a handful of configurations."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shapes = [(1, "first", 0.50, 120.0), (4, "vote", 0.70, 480.0), (8, "vote", 0.80, 960.0), (8, "first", 0.55, 950.0),
              (16, "vote", 0.80, 1900.0)]  # fmt: skip
    results = []
    for number, (n, selection, acc, tokens) in enumerate(shapes):
        config = Config(stage=Stage(model="m", temperature=0.0 if n == 1 else 0.8, n=n, selection=selection))
        metrics = {"accuracy": acc, "ci95": [acc - 0.1, acc + 0.1], "canonical_accuracy": acc, "tokens": tokens,
                   "usd": 0.0, "latency_s": tokens / 100, "calls": float(n), "draws": 2}  # fmt: skip
        results.append(TrialResult(number, config, metrics, feasible=True))
    front = pareto_front(results)
    side = {"tokens": 5000, "during_search_tokens": 100, "fresh_tokens": 4000}
    costs = {"pool": side, "extension": dict(side, tokens=1000), "search_over_pool": 1.2, "during_search_over_build": 0.3}
    report = {"task": "adder", "models": ["m"], "dev": ["q0", "q1"], "test": ["q2"], "wall_s": 3.0, "not_replayable": "none"}
    outcome = SearchOutcome(run_dir, results, front, front[-1], costs, report=report)
    write_report(outcome)
    return outcome
