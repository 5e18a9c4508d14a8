"""`thinktank eval --ray`: the driver side. Workers solve, the driver alone writes the run store.

    with connected("10.0.0.5:6379") as nodes:
        await run_eval_on_ray(job, problems, store, workers=len(nodes))

The actors, their lanes, the one committer and what happens when a worker dies are `dispatch.py`'s (shared with
`search --ray`). Every batch of rows is committed by the driver in one transaction, so a killed driver leaves whole
rows and a re-run resumes with exactly the missing problems; a problem is committed once, since the store refuses a
second row for an id. An error a problem raises in a worker (a backend that died, a bad budget) is re-raised here as
itself and stops the run, as in a local run; the rows committed so far stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from thinktank.cluster import dispatch
from thinktank.cluster._ray import import_ray
from thinktank.cluster.worker import EvalWorker, WorkerInfo, WorkerJob
from thinktank.eval.runner import Progress
from thinktank.eval.store import ProblemRecord, ResultStore
from thinktank.tasks.base import Problem


def with_grading_placement(job: WorkerJob, cluster_cpus: float) -> WorkerJob:
    """Grading tasks need a CPU to be scheduled: on a cluster without any (every node `--num-cpus=0`) they would wait
    forever, so the workers grade themselves."""
    return job if cluster_cpus >= 1 or not job.grade_in_tasks else replace(job, grade_in_tasks=False)


async def run_eval_on_ray(
    job: WorkerJob,
    problems: list[Problem],
    store: ResultStore,
    *,
    workers: int | None = None,
    concurrency: int = 4,
    max_restarts: int = 3,
    problem_attempts: int = 3,
    on_problem: Callable[[ProblemRecord, Progress], None] | None = None,
    on_workers: Callable[[list[WorkerInfo]], None] | None = None,
) -> Progress:
    """Solve what the store does not have yet on `workers` Ray actors (default: one per alive node), `concurrency`
    problems in flight on each. Needs a connected Ray (`connect.connected`)."""
    ray = import_ray()
    store.set_meta("planned", len(problems))
    done = store.done_ids()
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    progress = Progress()
    if not todo:  # a finished run starts no worker (and no llama-server)
        return progress
    started = time.monotonic()
    job = with_grading_placement(job, float(ray.cluster_resources().get("CPU", 0)))
    handles = dispatch.start_actors(ray, EvalWorker, job, workers=workers, concurrency=concurrency, max_restarts=max_restarts)
    try:
        infos = await dispatch.ready(ray, handles)
        if on_workers:
            on_workers(infos)
        await _drain(ray, handles, todo, store, progress, concurrency, problem_attempts, on_problem)
    finally:
        store.add_wall_time(time.monotonic() - started)
        await dispatch.stop(ray, handles)
    return progress


async def _drain(
    ray: Any,
    handles: list[Any],
    todo: list[tuple[int, Problem]],
    store: ResultStore,
    progress: Progress,
    concurrency: int,
    problem_attempts: int,
    on_problem: Callable[[ProblemRecord, Progress], None] | None,
) -> None:
    def commit(batch: list[ProblemRecord]) -> None:
        _commit(store, batch)  # the one write of these problems' rows
        for record in batch:
            progress.done += 1
            progress.passed += record.passed
            progress.tokens += record.tokens
            if on_problem:
                on_problem(record, progress)

    await dispatch.drain(ray, handles, todo, call=lambda handle, item: handle.solve.remote(*item),
                         name=lambda item: f"problem {item[1].id}", commit=commit, concurrency=concurrency,
                         attempts=problem_attempts)  # fmt: skip


def _commit(store: ResultStore, batch: list[ProblemRecord]) -> None:
    """One transaction for the batch where the store has one (`RunStore.add_many`), else a row at a time."""
    add_many = getattr(store, "add_many", None)
    if add_many is not None:
        add_many(batch)
    else:
        for record in batch:
            store.add(record)
