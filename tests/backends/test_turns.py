"""Co-located servers take turns: the holder's calls run together, a waiting server gets the next turn, nobody
starves, and cancelled or failed calls hand the turn on. `TakesTurns` obeys the backend contract."""

from __future__ import annotations

import asyncio

import pytest

from thinktank.backends import ScriptedBackend
from thinktank.backends.turns import TakesTurns, Turns
from thinktank.exceptions import BackendUnreachable
from thinktank.testing import BackendContract
from thinktank.types import GenerationRequest


class Call:
    """A call that holds `server`'s turn from when it enters until `finish()`."""

    def __init__(self, turns: Turns, server: str, log: list[str]) -> None:
        self.server = server
        self.entered = asyncio.Event()
        self._done = asyncio.Event()
        self.task = asyncio.create_task(self._run(turns, log))

    async def _run(self, turns: Turns, log: list[str]) -> None:
        async with turns.turn(self.server):
            log.append(self.server)
            self.entered.set()
            await self._done.wait()

    async def finish(self) -> None:
        self._done.set()
        await self.task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_calls_of_one_server_run_together() -> None:
    turns, log = Turns(), []
    calls = [Call(turns, "a", log) for _ in range(3)]
    await settle()
    assert all(c.entered.is_set() for c in calls) and turns.holder == "a"
    for c in calls:
        await c.finish()
    assert turns.holder is None


async def test_a_waiting_server_gets_the_next_turn_and_the_holder_admits_no_new_calls_meanwhile() -> None:
    turns, log = Turns(), []
    first_a = Call(turns, "a", log)
    await settle()
    b1, b2 = Call(turns, "b", log), Call(turns, "b", log)
    await settle()
    late_a = Call(turns, "a", log)  # arrives while b waits: must not overtake it
    await settle()
    assert not b1.entered.is_set() and not late_a.entered.is_set()
    await first_a.finish()
    await settle()
    assert b1.entered.is_set() and b2.entered.is_set(), "every call waiting when the turn began enters with it"
    assert not late_a.entered.is_set() and turns.holder == "b"
    await b1.finish()
    await settle()
    assert not late_a.entered.is_set(), "b still has a call running"
    await b2.finish()
    await settle()
    assert late_a.entered.is_set()
    await late_a.finish()
    assert log == ["a", "b", "b", "a"]


async def test_a_cancelled_waiter_does_not_block_the_holder() -> None:
    turns, log = Turns(), []
    a = Call(turns, "a", log)
    await settle()
    b = Call(turns, "b", log)
    await settle()
    deferred_a = Call(turns, "a", log)
    await settle()
    assert not deferred_a.entered.is_set()
    b.task.cancel()
    await settle()
    assert deferred_a.entered.is_set(), "with nobody else waiting, the holder admits calls again"
    await a.finish()
    await deferred_a.finish()
    assert turns.holder is None and "b" not in log


async def test_a_failing_call_hands_the_turn_on() -> None:
    turns = Turns()

    async def fail() -> None:
        async with turns.turn("a"):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail()
    log: list[str] = []
    b = Call(turns, "b", log)
    await settle()
    assert b.entered.is_set()
    await b.finish()


def reply(request: GenerationRequest, index: int) -> str:
    return f"reply {index} to {request.messages[-1]['content']}"


async def test_a_stream_holds_the_turn_until_closed() -> None:
    turns = Turns()
    backend = TakesTurns(ScriptedBackend(reply), turns, "a")
    events = backend.stream(GenerationRequest.from_prompt("hi", "m"))
    await anext(events)
    assert turns.holder == "a"
    await events.aclose()  # type: ignore[attr-defined]
    assert turns.holder is None


class TestTakesTurnsContract(BackendContract):
    @pytest.fixture(params=[False, True], ids=["fan-out", "native-n"])
    def backend(self, request: pytest.FixtureRequest) -> TakesTurns:
        return TakesTurns(ScriptedBackend(reply, supports_native_n=request.param), Turns(), "a")

    @pytest.fixture
    def broken_backend(self) -> TakesTurns:
        def fail(request: GenerationRequest, index: int) -> str:
            raise BackendUnreachable("down", "scripted")

        return TakesTurns(ScriptedBackend(fail), Turns(), "a")


def test_placement_knobs_reach_the_llama_server_command_line() -> None:
    from pathlib import Path

    from thinktank.backends.llama_server import LlamaServer

    default = LlamaServer("m.gguf", port=1).command(Path("/bin/llama-server"), Path("/m.gguf"))
    assert "--poll" not in default and "--cpu-range" not in default
    placed = LlamaServer("m.gguf", port=1, poll=0, cpus="1-1").command(Path("/bin/llama-server"), Path("/m.gguf"))
    assert placed[placed.index("--poll") + 1] == "0"
    assert placed[placed.index("--cpu-range") + 1 : placed.index("--cpu-range") + 4] == ["1-1", "--cpu-strict", "1"]


def test_a_background_server_process_runs_under_sched_idle() -> None:
    import os
    import subprocess
    import sys

    from thinktank.backends.llama_server import _child_setup

    probe = [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"]
    setup = _child_setup(die_with_parent=False, background=True)
    assert _child_setup(die_with_parent=False, background=False) is None
    out = subprocess.run(probe, preexec_fn=setup, capture_output=True, text=True, check=True).stdout
    assert int(out) == os.SCHED_IDLE
    assert int(subprocess.run(probe, capture_output=True, text=True, check=True).stdout) == os.SCHED_OTHER
