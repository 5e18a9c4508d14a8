"""An engine spec for workers: an in-process ScriptedBackend whose replies depend on the request only (prompt, seed,
temperature), never on call order, so any split of the problems over workers gives the same samples."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.problems import HiddenChecks, Problem, TaskInput
from thinktank.types import GenerationRequest


def math_problems(count: int) -> list[Problem]:
    return [
        Problem(TaskInput(f"q{i}", "math", f"What is {i} + {i}? End with #### <number>."), HiddenChecks(answer=str(2 * i)))
        for i in range(count)
    ]


def code_problems(count: int) -> list[Problem]:
    return [
        Problem(
            TaskInput(f"c{i}", "code", f"Write add{i}(x) returning x + {i}.", entry_point=f"add{i}"),
            HiddenChecks(test_code=f"def check(candidate):\n    assert candidate(1) == {1 + i}\n"),
        )
        for i in range(count)
    ]


def reply(request: GenerationRequest, _counter: int) -> str:
    """Right or wrong by a hash of the sample's key (prompt, seed, temperature)."""
    prompt = request.messages[-1]["content"]
    h = hashlib.sha256(f"{prompt}|{request.seed}|{request.temperature}".encode()).digest()[0]
    if prompt.startswith("Write add"):
        i = int(prompt.split()[1].removeprefix("add").split("(")[0])
        return f"```python\ndef add{i}(x):\n    return x + {i if h % 3 else i + 1}\n```"
    i = int(prompt.split()[2])
    return f"(h={h}) #### {2 * i if h % 3 else 2 * i + 1}"


@dataclass(frozen=True)
class ScriptedEngine:
    """`WorkerJob.engine` for tests and benchmarks: model "m" served in process, instantly or after `delay_s`."""

    delay_s: float = 0.0
    slots: int = 8

    def make(self) -> Engine:
        return Engine({"m": ScriptedBackend(reply, delay_s=self.delay_s, max_concurrency=self.slots)})

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Engine]:
        engine = self.make()
        try:
            yield engine
        finally:
            await engine.aclose()

    def open(self) -> contextlib.AbstractAsyncContextManager[Engine]:
        return self._open()


@dataclass(frozen=True)
class SearchFakesEngine(ScriptedEngine):
    """`PoolJob.engine` for tests: the search fakes' models "small" and "big" (tests/search/fakes.py), in process;
    their replies depend on the request only, so any split of the problems over workers gives the same pool."""

    def make(self) -> Engine:
        from search.fakes import engine as fakes_engine

        return fakes_engine()[0]
