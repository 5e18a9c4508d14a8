"""Run an architecture over a task's problems, grade them, store everything, resumably.

Problems run concurrently up to `concurrency` (default: the backends' total slots, so
the server stays busy without queueing far ahead). Every candidate an architecture
returns is graded against the hidden checks too, which gives coverage and pass@k.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thinktank._aio import gather_all
from thinktank.arch import Architecture
from thinktank.engine.budget import Budget
from thinktank.engine.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.eval.metrics import pass_at_k, percentile, wilson_interval
from thinktank.eval.store import ProblemRecord, ResultStore
from thinktank.tasks.base import Problem
from thinktank.telemetry import TraceSink
from thinktank.verifiers.base import Verdict


@dataclass
class Progress:
    done: int = 0
    passed: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def accuracy(self) -> float:
        return self.passed / self.done if self.done else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(1e-9, time.monotonic() - self.started)


async def grade_candidates(grader: Grader, problem: Problem, answers: list[str | None]) -> list[Verdict]:
    """Grade each distinct answer once, in parallel; identical answers share a verdict."""
    distinct = list(dict.fromkeys(answers))
    verdicts = dict(zip(distinct, await gather_all(grader.grade(problem, a) for a in distinct), strict=True))
    return [verdicts[answer] for answer in answers]


async def solve_and_grade(
    engine: Engine, arch: Architecture, grader: Grader, problem: Problem, position: int, budget: Budget | None,
    telemetry: TraceSink | None = None,
) -> ProblemRecord:  # fmt: skip
    ctx = engine.context(budget, name=problem.id)
    started = time.monotonic()
    result = await arch.run(problem.input, ctx)
    latency = time.monotonic() - started
    ctx.node.close()
    cand_verdicts = await grade_candidates(grader, problem, [c.answer for c in result.candidates])
    if result.answer is None:
        verdict = Verdict(False, result.error or "no answer")
    else:
        verdict = cand_verdicts[result.candidates.index(result.answer)]
    candidates = []
    for cand, v in zip(result.candidates, cand_verdicts, strict=True):
        data = cand.to_dict()
        data["hidden_verdict"] = v.to_dict()
        candidates.append(data)
    usage = result.usage
    if telemetry is not None:
        telemetry.export(ctx.node, attributes={"thinktank.architecture": arch.name, "thinktank.problem.id": problem.id,
                                               "thinktank.passed": verdict.passed})  # fmt: skip
    return ProblemRecord(
        problem.id,
        position,
        verdict.passed,
        verdict.reason,
        result.answer.answer if result.answer else None,
        len(result.candidates),
        sum(v.passed for v in cand_verdicts),
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.calls,
        usage.cost_usd,
        usage.cache_hits,
        latency,
        result.budget_cut,
        result.error,
        candidates,
        result.trace.to_dict(),
    )


async def run_eval(
    engine: Engine,
    arch: Architecture,
    problems: list[Problem],
    store: ResultStore,
    *,
    grader: Grader | None = None,
    budget: Budget | None = None,
    concurrency: int = 4,
    on_problem: Callable[[ProblemRecord, Progress], None] | None = None,
    telemetry: TraceSink | None = None,
) -> Progress:
    """Solve what the store does not have yet; each finished problem is committed at once (and its trace sent
    to `telemetry`)."""
    grader = grader or Grader(engine.resources)
    store.set_meta("planned", len(problems))  # the total a live view (`thinktank ui`) measures progress against
    done = store.done_ids()
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    progress = Progress()
    limit = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(position: int, problem: Problem) -> None:
        async with limit:
            record = await solve_and_grade(engine, arch, grader, problem, position, budget, telemetry)
        store.add(record)
        progress.done += 1
        progress.passed += record.passed
        progress.tokens += record.tokens
        if on_problem:
            on_problem(record, progress)

    try:
        await gather_all(one(position, problem) for position, problem in todo)
    finally:
        store.add_wall_time(time.monotonic() - started)
    return progress


def summarize(store: ResultStore) -> dict[str, Any]:
    records = store.records()
    n = len(records)
    passed = sum(r.passed for r in records)
    low, high = wilson_interval(passed, n)
    min_candidates = min((r.n_candidates for r in records), default=0)
    pass_k = {}
    for k in (1, 2, 4, 8, 16):
        if 0 < k <= min_candidates:
            pass_k[f"pass@{k}"] = sum(pass_at_k(r.n_candidates, r.n_correct, k) for r in records) / n
    latencies = [r.latency_s for r in records]
    config = store.get_meta("config") or {}
    return {
        "run": str(store.run_dir),
        "task": config.get("task"),
        "arch": config.get("arch"),
        "models": config.get("models"),
        "problems": n,
        "passed": passed,
        "accuracy": passed / n if n else 0.0,
        "ci95": (low, high),
        "coverage": sum(r.n_correct > 0 for r in records) / n if n else 0.0,
        **pass_k,
        "tokens_per_problem": sum(r.tokens for r in records) / n if n else 0.0,
        # what the architecture consumed, served from the response cache or not: compares presets that share samples
        "tokens_with_cache_per_problem": sum(r.tokens + _saved_tokens(r) for r in records) / n if n else 0.0,
        "calls_per_problem": sum(r.calls for r in records) / n if n else 0.0,
        "usd_per_problem": sum(r.cost_usd for r in records) / n if n else 0.0,
        "p50_latency_s": percentile(latencies, 50),
        "p95_latency_s": percentile(latencies, 95),
        "wall_s": float(store.get_meta("wall_s") or 0.0),
        "budget_cut": sum(r.budget_cut for r in records),
        "errors": sum(r.error is not None for r in records),
        **checked_but_wrong(records),
    }


def checked_but_wrong(records: list[ProblemRecord]) -> dict[str, Any]:
    """How often a candidate that passed every check the architecture ran on it (public asserts, "the program
    returned a number", "the query ran and returned rows", a critic's approval) fails the hidden checks. That rate
    caps what resampling against those checks can reach ("Inference Scaling fLaws"). `None` when no candidate was
    checked at all (e.g. `single`, or plain voting)."""
    checked = fooled = 0
    for record in records:
        for candidate in record.candidates:
            verdicts = candidate.get("verdicts") or {}
            if verdicts and all(v.get("passed") for v in verdicts.values()):
                checked += 1
                fooled += not candidate["hidden_verdict"]["passed"]
    return {"checked_but_wrong": (fooled, checked), "false_positive_rate": fooled / checked if checked else None}


def _saved_tokens(record: ProblemRecord) -> int:
    return int((record.trace.get("usage") or {}).get("saved_tokens", 0))
