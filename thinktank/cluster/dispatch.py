"""Spreading work over Ray actors, shared by `eval --ray` (problems to solve) and `search --ray` (pool rows to fill).

    handles = start_actors(ray, EvalWorker, job, workers=2, concurrency=4)
    await drain(ray, handles, todo, call=lambda h, item: h.solve.remote(*item), name=..., commit=..., concurrency=4)

One actor per worker, round-robin over the alive nodes, each with `concurrency` lanes: a lane takes the next item
from one queue and awaits its result from its actor, so fast workers take more and none queues far ahead. One
committer on the driver hands every result that arrived while its last commit ran to `commit`: the driver alone
writes, each item once.

Faults: an actor process that dies is restarted by Ray, which re-sends the calls it had in flight
(`max_task_retries=-1`). An actor that cannot be restarted (its `max_restarts` used up, or its node lost) puts its
items back in the queue for the others; an item lost with `attempts` workers, or a run with no worker left, ends
with ClusterError. An error an item raises in a worker is re-raised here as itself and stops the run; what was
committed stays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from thinktank.exceptions import ClusterError

__all__ = ["STOP_TIMEOUT_S", "cause", "drain", "ready", "start_actors", "stop"]

#: how long workers get to close their engines (stop llama-servers) when the run ends
STOP_TIMEOUT_S = 30.0

T = TypeVar("T")
R = TypeVar("R")


def cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside a RayTaskError (so a ThinktankError keeps its class and exit code)."""
    inner = getattr(exc, "cause", None)
    return inner if isinstance(inner, BaseException) else exc


def start_actors(
    ray: Any, worker_class: type, job: Any, *, workers: int | None, concurrency: int, max_restarts: int = 3
) -> list[Any]:
    """`workers` actors of `worker_class(job)` (default: one per alive node), with `job.env` in their environment."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    env = dict(job.env)
    actor_class = ray.remote(worker_class)
    return [
        actor_class.options(
            num_cpus=0,  # a worker mostly waits on its backend; CPU work (grading) is scheduled as tasks
            max_concurrency=concurrency + 2,  # its lanes, plus ready/stop
            max_restarts=max_restarts,
            max_task_retries=-1,
            # round-robin over the nodes (Ray's SPREAD and soft affinity do not spread zero-CPU actors reliably); a
            # worker restarts on its own node, and one whose node is lost hands its items to the others
            scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False),
            **({"runtime_env": {"env_vars": env}} if env else {}),
        ).remote(job)
        for i in range(workers or len(nodes))
    ]


async def ready(ray: Any, handles: Sequence[Any]) -> list[Any]:
    """Every actor's `ready()` (it opens its engine): their WorkerInfo, or the error that stopped one."""
    try:
        return list(await asyncio.gather(*(h.ready.remote() for h in handles)))
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"a Ray worker died while opening its engine: {exc}") from exc
    except ray.exceptions.RayTaskError as exc:
        raise cause(exc) from exc


async def drain(
    ray: Any,
    handles: Sequence[Any],
    todo: Sequence[T],
    *,
    call: Callable[[Any, T], Awaitable[R]],
    name: Callable[[T], str],
    commit: Callable[[list[R]], None],
    concurrency: int,
    attempts: int,
) -> None:
    """Run `call(handle, item)` for every item on the actors, `concurrency` at a time on each; `commit` every result once."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    remaining = len(todo)
    if remaining == 0:
        return
    arrived: list[R] = []
    wake = asyncio.Event()
    lost: dict[str, int] = {}
    dead: set[int] = set()

    async def lane(worker: int) -> None:
        while worker not in dead:
            item = await queue.get()
            if worker in dead:  # a sibling lane found this worker gone while this one waited: not a lost attempt
                queue.put_nowait(item)
                return
            try:
                result = await call(handles[worker], item)
            except _gone(ray) as exc:  # restarts used up, or its node is lost: this worker is gone for good
                dead.add(worker)
                key = name(item)
                lost[key] = lost.get(key, 0) + 1
                if lost[key] >= attempts:
                    raise ClusterError(f"{key} was lost with {lost[key]} Ray workers: {exc}") from exc
                queue.put_nowait(item)
                wake.set()  # the committer checks whether any worker is left
                return
            except ray.exceptions.RayTaskError as exc:
                raise cause(exc) from exc
            arrived.append(result)
            wake.set()

    async def committer() -> None:
        """The one writer: every result that arrived while the last commit ran goes in the next one, so a store's
        fsync per commit does not cap the run at one item per fsync."""
        nonlocal remaining
        while remaining:
            await wake.wait()
            wake.clear()
            batch = arrived[:]
            del arrived[:]
            if batch:
                commit(batch)  # the one write of these items
            remaining -= len(batch)
            if remaining and len(dead) == len(handles) and not arrived:
                raise ClusterError(f"every Ray worker was lost; {remaining} problems are not done (a re-run resumes)")

    lanes = [asyncio.ensure_future(lane(w)) for w in range(len(handles)) for _ in range(concurrency)]
    writer = asyncio.ensure_future(committer())
    try:
        pending: set[asyncio.Future[None]] = {*lanes, writer}
        while not writer.done():  # a lane that failed (not one whose worker is gone) ends the run with its error
            done_now, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done_now:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
    finally:
        for task in [*lanes, writer]:
            task.cancel()
        await asyncio.gather(*lanes, writer, return_exceptions=True)


def _gone(ray: Any) -> tuple[type[BaseException], ...]:
    """The errors that say a worker is gone for good (ActorUnschedulableError is newer than some supported Rays)."""
    unschedulable = getattr(ray.exceptions, "ActorUnschedulableError", None)
    return (ray.exceptions.RayActorError, *([unschedulable] if unschedulable else []))


async def stop(ray: Any, handles: Sequence[Any]) -> None:
    """Close every worker's engine (its llama-servers stop), then end the actors; a dead one is skipped."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(h.stop.remote() for h in handles), return_exceptions=True), STOP_TIMEOUT_S)
    for handle in handles:
        with contextlib.suppress(Exception):
            ray.kill(handle)
