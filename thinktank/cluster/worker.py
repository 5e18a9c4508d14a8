"""What runs on the cluster's nodes: one `EvalWorker` actor per worker, owning its engine, and one-CPU grading tasks.

An `EvalWorker` opens its engine itself, on its node, from an `EngineSpec`: `OpenEngine` is `runtime.open_engine`'s
arguments, so a worker either starts (and on exit stops) its node's embedded llama-server through
`backends/llama_server.py`, or talks to the remote endpoints the models' URL names. It rebuilds the architecture from
its spec and solves one problem per call with the same `solve_and_grade` a local run uses, returning the row: it
never writes the run store (the driver does, once per problem).

Grading that runs answers (the kinds whose `search_runs_answers` is set: code in the sandbox, SQL on synthesised
databases) goes out as Ray tasks of one CPU each, so the checks spread over the nodes with free cores; other kinds
grade inside the worker. Public checks an architecture runs while it solves (verify, repair, generated tests) stay in
the worker, on its node's sandbox.

If a worker's process dies, Ray restarts the actor (up to `max_restarts`) and re-sends the calls it had in flight;
the restarted actor opens its engine again on first use, since `__init__` cannot await.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from thinktank.arch import Architecture, build_architecture
from thinktank.backends.config import BackendsConfig
from thinktank.engine.budget import Budget
from thinktank.engine.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.eval.runner import solve_and_grade
from thinktank.eval.store import ProblemRecord
from thinktank.kinds import kind_of
from thinktank.tasks.base import Problem
from thinktank.telemetry import TraceSink, exporting
from thinktank.usage import PriceTable
from thinktank.verifiers.base import Verdict


class EngineSpec(Protocol):
    """How a worker opens its engine on its own node (pickled to the node, so plain data plus this one method)."""

    def open(self) -> contextlib.AbstractAsyncContextManager[Engine]: ...


@dataclass(frozen=True)
class OpenEngine:
    """`runtime.open_engine` on the node: no `backend_url` starts that node's llama-server for each model pack (pulled
    and built there on first use); with one, every worker calls that endpoint. The API key is read from `api_key_env`
    in the worker's environment (the driver forwards its own value when it has one)."""

    models: list[str]
    backend_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    slots: int = 4
    use_cache: bool = True
    cache_path: str | Path | None = None  # a SQLite file on each node, or a shared cache's postgresql:// URL
    prices: PriceTable | None = None
    pools: BackendsConfig | None = None  # a backends file's pools (their API keys travel with it)

    def open(self) -> contextlib.AbstractAsyncContextManager[Engine]:
        from thinktank.runtime import open_engine

        return open_engine(
            self.models,
            backend_url=self.backend_url,
            api_key=os.environ.get(self.api_key_env),
            slots=self.slots,
            use_cache=self.use_cache,
            cache_path=self.cache_path,
            prices=self.prices,
            pools=self.pools,
        )


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs besides the problems: how to open its engine, the architecture, the budget."""

    engine: EngineSpec
    spec: dict[str, Any]  # Architecture.spec: rebuilt on the node (a YAML path may not exist there)
    default_models: list[str]
    budget: Budget | None = None
    grade_in_tasks: bool = True  # grading that runs answers as one-CPU Ray tasks; False: inside the worker
    env: dict[str, str] = field(default_factory=dict)  # set in the worker's environment (e.g. the API key)
    otlp_endpoint: str | None = None  # each worker exports its problems' traces there itself (the driver's --otlp)


@dataclass(frozen=True)
class WorkerInfo:
    pid: int
    node_id: str
    host: str


def _grade_on_a_core(problem: Problem, answer: str) -> Verdict:
    """A Ray task: grade one answer with its own verifiers (sandbox, SQL), closed afterwards."""

    async def grade() -> Verdict:
        grader = Grader()
        try:
            return await grader.grade(problem, answer)
        finally:
            await grader.resources.aclose()

    return asyncio.run(grade())


class TaskGrader(Grader):
    """Sends grading that runs answers to Ray tasks of one CPU (`remote`); grades the other kinds here."""

    def __init__(self, resources: Any, remote: Any) -> None:
        super().__init__(resources)
        self.remote = remote

    async def grade(self, problem: Problem, answer: str | None) -> Verdict:
        if answer is None or not kind_of(problem.input).search_runs_answers:
            return await super().grade(problem, answer)
        verdict: Verdict = await self.remote.remote(problem, answer)
        return verdict


class EngineWorker:
    """What every worker actor shares: its job's environment, its engine opened on first use (a restarted actor opens
    it again, since `__init__` cannot await), `ready` and `stop`. Subclasses say what else they build (`_setup`)."""

    def __init__(self, job: Any) -> None:
        os.environ.update(job.env)
        self.job = job
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._ready: Any = None

    def _setup(self, engine: Engine) -> Any:
        return engine

    async def _open(self) -> Any:
        async with self._lock:
            if self._ready is None:
                self._ready = self._setup(await self._stack.enter_async_context(self.job.engine.open()))
            return self._ready

    async def ready(self) -> WorkerInfo:
        """Open the engine (start the llama-server, if any) and say where this worker runs."""
        await self._open()
        import ray

        return WorkerInfo(os.getpid(), ray.get_runtime_context().get_node_id(), socket.gethostname())

    async def stop(self) -> None:
        """Close the engine: stops this worker's llama-servers and verifiers."""
        async with self._lock:
            self._ready = None
            await self._stack.aclose()


class EvalWorker(EngineWorker):
    """A Ray actor (made with `ray.remote(EvalWorker)` by the driver): solves problems, returns their rows."""

    job: WorkerJob

    def _setup(self, engine: Engine) -> tuple[Engine, Architecture, Grader, TraceSink | None]:
        arch = build_architecture(self.job.spec, self.job.default_models, source="the driver's architecture")
        grader: Grader = Grader(engine.resources)
        if self.job.grade_in_tasks:
            import ray

            grader = TaskGrader(engine.resources, ray.remote(num_cpus=1)(_grade_on_a_core))
        # Spans leave from the node that made them, as every OpenTelemetry service does; `stop` flushes them.
        sink = self._stack.enter_context(exporting(self.job.otlp_endpoint, service_name="thinktank-worker"))
        return engine, arch, grader, sink

    async def solve(self, position: int, problem: Problem) -> ProblemRecord:
        engine, arch, grader, sink = await self._open()
        return await solve_and_grade(engine, arch, grader, problem, position, self.job.budget, sink)
