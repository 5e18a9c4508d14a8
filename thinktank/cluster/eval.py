"""`thinktank eval --ray`: the driver side. Workers solve, the driver alone writes the run store.

    with connected("10.0.0.5:6379") as nodes:
        await run_eval_on_ray(job, problems, store, workers=len(nodes))

Each worker gets `concurrency` lanes; a lane takes the next missing problem from one queue and awaits its row from
its worker, so fast workers take more problems and none queues far ahead. Every row is committed by the driver in
its own transaction (as `run_eval` does), so a killed driver leaves whole rows and a re-run resumes with exactly
the missing problems; a problem is committed once, since the store refuses a second row for an id.

Faults: a worker process that dies is restarted by Ray, which re-sends the calls it had in flight
(`max_task_retries=-1`), and a grading task whose process dies is re-run (Ray's task retries). A worker that
cannot be restarted (its `max_restarts` used up) puts its problems back in the queue for the other workers; a
problem lost with `problem_attempts` workers, or a run with no worker left, ends with ClusterError. An error a
problem raises in a worker (a backend that died, a bad budget) is re-raised here as itself and stops the run, as
in a local run; the rows committed so far stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from thinktank.cluster._ray import import_ray
from thinktank.cluster.worker import EvalWorker, WorkerInfo, WorkerJob
from thinktank.eval.runner import Progress
from thinktank.eval.store import ProblemRecord, ResultStore
from thinktank.exceptions import ClusterError
from thinktank.tasks.base import Problem

#: how long workers get to close their engines (stop llama-servers) when the run ends
STOP_TIMEOUT_S = 30.0


def with_grading_placement(job: WorkerJob, cluster_cpus: float) -> WorkerJob:
    """Grading tasks need a CPU to be scheduled: on a cluster without any (every node `--num-cpus=0`) they would wait
    forever, so the workers grade themselves."""
    return job if cluster_cpus >= 1 or not job.grade_in_tasks else replace(job, grade_in_tasks=False)


def _cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside a RayTaskError (so a ThinktankError keeps its class and exit code)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


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
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    store.set_meta("planned", len(problems))
    done = store.done_ids()
    todo = [(i, p) for i, p in enumerate(problems) if p.id not in done]
    progress = Progress()
    if not todo:  # a finished run starts no worker (and no llama-server)
        return progress
    started = time.monotonic()
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    job = with_grading_placement(job, float(ray.cluster_resources().get("CPU", 0)))
    env = dict(job.env)
    actor_class = ray.remote(EvalWorker)
    handles = [
        actor_class.options(
            num_cpus=0,  # a worker mostly waits on its backend; the CPU work (grading) is scheduled as tasks
            max_concurrency=concurrency + 2,  # its lanes, plus ready/stop
            max_restarts=max_restarts,
            max_task_retries=-1,
            # round-robin over the nodes (Ray's SPREAD and soft affinity do not spread zero-CPU actors reliably); a
            # worker restarts on its own node, and one whose node is lost hands its problems to the others
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False),
            **({"runtime_env": {"env_vars": env}} if env else {}),
        ).remote(job)
        for i in range(workers or len(nodes))
    ]
    try:
        try:
            infos = await asyncio.gather(*(h.ready.remote() for h in handles))
        except ray.exceptions.RayActorError as exc:
            raise ClusterError(f"a Ray worker died while opening its engine: {exc}") from exc
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from exc
        if on_workers:
            on_workers(list(infos))
        await _drain(ray, handles, todo, store, progress, concurrency, problem_attempts, on_problem)
    finally:
        store.add_wall_time(time.monotonic() - started)
        await _stop(ray, handles)
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
    queue: asyncio.Queue[tuple[int, Problem]] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    remaining = len(todo)
    if remaining == 0:
        return
    arrived: list[ProblemRecord] = []
    wake = asyncio.Event()
    lost: dict[str, int] = {}
    dead: set[int] = set()

    async def lane(worker: int) -> None:
        while worker not in dead:
            position, problem = await queue.get()
            if worker in dead:  # a sibling lane found this worker gone while this one waited: not a lost attempt
                queue.put_nowait((position, problem))
                return
            try:
                record: ProblemRecord = await handles[worker].solve.remote(position, problem)
            except _gone(ray) as exc:  # restarts used up, or its node is lost: this worker is gone for good
                dead.add(worker)
                lost[problem.id] = lost.get(problem.id, 0) + 1
                if lost[problem.id] >= problem_attempts:
                    raise ClusterError(f"problem {problem.id} was lost with {lost[problem.id]} Ray workers: {exc}") from exc
                queue.put_nowait((position, problem))
                wake.set()  # the committer checks whether any worker is left
                return
            except ray.exceptions.RayTaskError as exc:
                raise _cause(exc) from exc
            arrived.append(record)
            wake.set()

    async def commit() -> None:
        """The one writer: every row that arrived while the last commit ran goes in the next transaction, so the
        store's fsync per commit does not cap the run at one row per fsync."""
        nonlocal remaining
        while remaining:
            await wake.wait()
            wake.clear()
            batch = arrived[:]
            del arrived[:]
            _commit(store, batch)  # the one write of these problems' rows
            remaining -= len(batch)
            for record in batch:
                progress.done += 1
                progress.passed += record.passed
                progress.tokens += record.tokens
                if on_problem:
                    on_problem(record, progress)
            if remaining and len(dead) == len(handles) and not arrived:
                raise ClusterError(f"every Ray worker was lost; {remaining} problems are not done (a re-run resumes)")

    lanes = [asyncio.ensure_future(lane(w)) for w in range(len(handles)) for _ in range(concurrency)]
    committer = asyncio.ensure_future(commit())
    try:
        pending: set[asyncio.Future[None]] = {*lanes, committer}
        while not committer.done():  # a lane that failed (not one whose worker is gone) ends the run with its error
            done_now, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done_now:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in [*lanes, committer]:
            task.cancel()
        await asyncio.gather(*lanes, committer, return_exceptions=True)


def _commit(store: ResultStore, batch: list[ProblemRecord]) -> None:
    """One transaction for the batch where the store has one (`RunStore.add_many`), else a row at a time."""
    add_many = getattr(store, "add_many", None)
    if add_many is not None:
        add_many(batch)
    else:
        for record in batch:
            store.add(record)


def _gone(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors that say a worker is gone for good (ActorUnschedulableError is newer than some supported Rays)."""
    unschedulable = getattr(ray.exceptions, "ActorUnschedulableError", None)
    return (ray.exceptions.RayActorError, *([unschedulable] if unschedulable else []))


async def _stop(ray: Any, handles: list[Any]) -> None:
    """Close every worker's engine (its llama-servers stop), then end the actors; a dead one is skipped."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(h.stop.remote() for h in handles), return_exceptions=True), STOP_TIMEOUT_S)
    for handle in handles:
        with contextlib.suppress(Exception):
            ray.kill(handle)
