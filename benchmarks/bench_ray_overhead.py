"""Orchestration overhead of `eval --ray` per problem, with an instant in-process backend (issue 15, 5(a)).

    .venv/bin/python benchmarks/bench_ray_overhead.py --problems 2000 --workers 1 2 4
    .venv/bin/python benchmarks/bench_ray_overhead.py --ray 10.0.0.5:6379          # an existing cluster

The backend answers at once (a ScriptedBackend in each worker, no sockets), so what is measured is thinktank's and
Ray's own cost: one actor call per problem (problem pickled out, row pickled back), the architecture (`single`), math
grading in the worker, and the driver's SQLite commits (the rows that arrived meanwhile, one transaction). A local
`run_eval` over the same problems with the same backend is the baseline ("vs local": Ray wall / problems - local wall
/ problems; negative when the workers solve while the driver commits). "driver CPU" is the driver process's CPU time
per problem: Ray's calls and (un)pickling plus the commits, the driver's ceiling at 1000 / it problems/s.

"steady" excludes opening the workers (actor start, engine open): it runs from the moment every worker is ready.
Each configuration runs on a fresh run store. `--ray local` (the default) starts a one-node Ray in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from thinktank.arch import load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.cluster import WorkerJob, connected, run_eval_on_ray
from thinktank.engine import Engine
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.problems import HiddenChecks, Problem, TaskInput


def problems(count: int) -> list[Problem]:
    return [
        Problem(TaskInput(f"q{i}", "math", f"What is {i} + {i}? End with #### <number>."), HiddenChecks(answer=str(2 * i)))
        for i in range(count)
    ]


def reply(request, _index):  # type: ignore[no-untyped-def]
    i = int(request.messages[-1]["content"].split()[2])
    return f"#### {2 * i}"


@dataclass(frozen=True)
class InstantEngine:
    """Pickled to the workers by value (this module is __main__ there too)."""

    slots: int = 64

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Engine]:
        engine = Engine({"m": ScriptedBackend(reply, max_concurrency=self.slots)})
        try:
            yield engine
        finally:
            await engine.aclose()

    def open(self) -> contextlib.AbstractAsyncContextManager[Engine]:
        return self._open()


async def local(items: list[Problem], concurrency: int, root: Path) -> float:
    arch = load_architecture("single", ["m"])
    store = RunStore(root / "local")
    async with InstantEngine().open() as engine:
        started = time.perf_counter()
        await run_eval(engine, arch, items, store, concurrency=concurrency)
        wall = time.perf_counter() - started
    assert len(store.records()) == len(items)
    return wall


async def on_ray(items: list[Problem], workers: int, concurrency: int, root: Path) -> tuple[float, float, float]:
    arch = load_architecture("single", ["m"])
    job = WorkerJob(InstantEngine(), arch.spec, ["m"])
    store = RunStore(root / f"ray-{workers}")
    ready: list[tuple[float, float]] = []
    started = time.perf_counter()
    await run_eval_on_ray(
        job, items, store, workers=workers, concurrency=concurrency,
        on_workers=lambda infos: ready.append((time.perf_counter(), time.process_time())),
    )  # fmt: skip
    wall, cpu = time.perf_counter() - started, time.process_time()
    assert len(store.records()) == len(items) == len({r.problem_id for r in store.records()})
    return wall, wall - (ready[0][0] - started), cpu - ready[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=8, help="problems in flight per worker")
    parser.add_argument("--ray", default="local")
    args = parser.parse_args()
    items = problems(args.problems)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = asyncio.run(local(items, args.concurrency, root))
        n = len(items)
        print(f"local run_eval, concurrency {args.concurrency}: {1000 * base / n:.2f} ms/problem ({n / base:.0f} problems/s)")
        columns = ["Ray workers", "wall", "steady wall", "ms/problem (steady)", "vs local ms/problem", "problems/s (steady)"]
        print("| " + " | ".join([*columns, "driver CPU ms/problem"]) + " |")
        print("|---|---|---|---|---|---|---|")
        with connected(args.ray) as nodes:
            for workers in args.workers:
                wall, steady, cpu = asyncio.run(on_ray(items, workers, args.concurrency, root))
                print(f"| {workers} | {wall:.1f} s | {steady:.1f} s | {1000 * steady / n:.2f} | {1000 * (steady - base) / n:+.2f}"
                      f" | {n / steady:.0f} | {1000 * cpu / n:.2f} |", flush=True)  # fmt: skip
            print(f"nodes: {len(nodes)}")


if __name__ == "__main__":
    main()
