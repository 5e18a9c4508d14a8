"""PoolBackend with in-process replicas: affinity, least-loaded fallback, per-replica caps, health out and back
in, failover, Retry-After, every replica down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from thinktank.backends import Capabilities, ScriptedBackend, StreamEvent
from thinktank.backends.base import Backend
from thinktank.backends.pool import PoolBackend, Replica, affinity_key
from thinktank.backends.pool import _rank as rank
from thinktank.backends.retry import RetryPolicy
from thinktank.engine import Engine
from thinktank.exceptions import AllReplicasDown, BackendError, BackendStatusError, BackendUnreachable
from thinktank.types import BackendResponse, Choice, GenerationRequest


class Server:
    """A replica double: a ScriptedBackend whose failures, gate and health a test switches."""

    def __init__(self, name: str, **capabilities: object) -> None:
        self.down = False
        self.fail_next: list[BackendError] = []
        self.gate: asyncio.Event | None = None
        self.health_checks = 0
        self.backend = ScriptedBackend(self.reply, name=name, **capabilities)  # type: ignore[arg-type]

    async def reply(self, request: GenerationRequest, index: int) -> str:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise BackendUnreachable(f"cannot reach backend at {self.backend.name}", self.backend.name)
        if self.fail_next:
            raise self.fail_next.pop(0)
        return f"{self.backend.name} says {index}"

    async def health(self) -> None:
        self.health_checks += 1
        if self.down:
            raise BackendUnreachable(f"{self.backend.name}/health: connection refused", self.backend.name)

    @property
    def prompts(self) -> list[str]:
        return [r.messages[-1]["content"] for r in self.backend.requests]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(*servers: Server, slots: int | list[int] = 2, **kwargs: object) -> PoolBackend:
    sizes = slots if isinstance(slots, list) else [slots] * len(servers)
    kwargs.setdefault("health_interval_s", 0.01)
    kwargs.setdefault("retry_policy", RetryPolicy(max_retries=2, backoff_base_s=0.001, backoff_max_s=0.01))
    replicas = [Replica(s.backend, n, health=s.health) for s, n in zip(servers, sizes, strict=True)]
    return PoolBackend("m", replicas, **kwargs)  # type: ignore[arg-type]


def ask(prompt: str, **kwargs: object) -> GenerationRequest:
    return GenerationRequest.from_prompt(prompt, "m", **kwargs)  # type: ignore[arg-type]


def prompt_for(target: str, names: list[str], second: str | None = None) -> str:
    """A prompt whose rendezvous order starts with `target` (then `second`, if given)."""
    for i in range(10_000):
        prompt = f"question {i}"
        order = sorted(names, key=lambda n: rank(affinity_key(ask(prompt)), n), reverse=True)
        if order[0] == target and (second is None or order[1] == second):
            return prompt
    raise AssertionError("no such prompt")


async def _record(log: list[str], name: str) -> None:
    log.append(name)


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_the_pool_is_one_model_with_the_slots_of_its_replicas() -> None:
    a = Server("a", supports_native_n=True, seeded_native_n=True, max_n_per_call=8)
    b = Server("b", supports_native_n=True, seeded_native_n=True, max_n_per_call=8)
    pool = make_pool(a, b, slots=[3, 2])
    assert pool.capabilities == Capabilities(5, True, True, 2, False)  # a seeded call of n must fit one replica
    mixed = make_pool(Server("c", supports_native_n=True), Server("d"), slots=[4, 4])
    assert (mixed.capabilities.max_concurrency, mixed.capabilities.supports_native_n) == (8, False)
    with pytest.raises(ValueError, match="at least one replica"):
        PoolBackend("m", [])
    with pytest.raises(ValueError, match="distinct endpoints"):
        make_pool(Server("a"), Server("a"))


async def test_all_samples_of_one_prompt_go_to_one_replica() -> None:
    servers = [Server(name) for name in "abc"]
    pool = make_pool(*servers, slots=8)
    gate = asyncio.Event()
    for server in servers:
        server.gate = gate
    calls = [asyncio.create_task(pool.generate(ask("the same question", seed=s, temperature=0.8))) for s in range(8)]
    await until(lambda: sum(s.backend.in_flight for s in servers) == 8)  # all in flight together, not one by one
    gate.set()
    await asyncio.gather(*calls)
    assert sorted(len(s.backend.requests) for s in servers) == [0, 0, 8]
    await asyncio.gather(*(pool.generate(ask(f"question {i}")) for i in range(30)))
    assert all(len(s.backend.requests) > 0 for s in servers)  # different prompts spread over every replica


async def test_a_full_affinity_replica_sends_the_call_to_the_least_loaded_one() -> None:
    a, b, c = Server("a"), Server("b"), Server("c")
    pool = make_pool(a, b, c, slots=2)
    p = prompt_for("a", ["a", "b", "c"], second="b")  # after a, rendezvous would pick b
    q = prompt_for("b", ["a", "b", "c"])
    a.gate, b.gate = asyncio.Event(), asyncio.Event()
    held = [asyncio.create_task(pool.generate(ask(p, seed=s))) for s in range(2)] + [asyncio.create_task(pool.generate(ask(q)))]
    await until(lambda: (len(a.backend.requests), len(b.backend.requests)) == (2, 1))
    response = await pool.generate(ask(p, seed=5))  # a is full; b has 1 of 2 in use, c none: c
    assert response.choices[0].text.startswith("c says")
    a.gate.set(), b.gate.set()
    await asyncio.gather(*held)
    assert [r.in_use for r in pool.replicas] == [0, 0, 0]


async def test_each_replica_runs_at_most_its_slots() -> None:
    a, b = Server("a"), Server("b")
    pool = make_pool(a, b, slots=[2, 1])
    a.gate = b.gate = gate = asyncio.Event()
    calls = [asyncio.create_task(pool.generate(ask(f"question {i}"))) for i in range(12)]
    await until(lambda: a.backend.in_flight + b.backend.in_flight == 3)
    gate.set()
    for response in await asyncio.gather(*calls):
        assert len(response.choices) == 1
    assert (a.backend.peak_in_flight, b.backend.peak_in_flight) == (2, 1)
    assert [r.peak_in_use for r in pool.replicas] == [2, 1]


async def test_a_seeded_call_of_n_holds_n_slots_of_its_replica() -> None:
    caps = {"supports_native_n": True, "seeded_native_n": True, "max_n_per_call": 4}
    a, b = Server("a", **caps), Server("b", **caps)
    pool = make_pool(a, b, slots=4)
    a.gate = b.gate = gate = asyncio.Event()
    p = prompt_for("a", ["a", "b"])
    first = asyncio.create_task(pool.generate(ask(p, n=3, seed=0)))
    await until(lambda: pool.replicas[0].in_use == 3)
    second = asyncio.create_task(pool.generate(ask(p, n=2, seed=3)))  # one slot left on a: b takes it
    await until(lambda: pool.replicas[1].in_use == 2)
    gate.set()
    assert [len(r.choices) for r in await asyncio.gather(first, second)] == [3, 2]


async def test_a_failing_replica_fails_over_and_is_health_checked_out_and_back_in() -> None:
    a, b = Server("a"), Server("b")
    pool = make_pool(a, b, slots=2)
    p = prompt_for("a", ["a", "b"])
    a.down = True
    response = await pool.generate(ask(p))
    assert response.choices[0].text.startswith("b says")  # failed over at once, same call
    assert not pool.replicas[0].up and "cannot reach backend at a" in pool.replicas[0].reason
    tried_on_a = len(a.backend.requests)
    for i in range(5):
        assert (await pool.generate(ask(p, seed=i))).choices[0].text.startswith("b says")
    assert len(a.backend.requests) == tried_on_a  # an out replica gets no calls
    await until(lambda: a.health_checks >= 2)  # polled while out, and still failing
    assert (
        not pool.replicas[0].up
        and "then its health check failed: " in pool.replicas[0].reason
        and "cannot reach backend at a" in pool.replicas[0].reason
    )
    a.down = False
    await until(lambda: pool.replicas[0].up)
    assert (await pool.generate(ask(p))).choices[0].text.startswith("a says")  # back in, affinity restored
    await pool.aclose()


async def test_retry_after_keeps_calls_off_a_replica_for_that_long() -> None:
    a, b = Server("a"), Server("b")
    clock = Clock()
    pool = make_pool(a, b, slots=2, clock=clock)
    p = prompt_for("a", ["a", "b"])
    a.fail_next = [BackendStatusError("busy", 429, "a", retry_after=30)]
    assert (await pool.generate(ask(p))).choices[0].text.startswith("b says")  # a said wait: b at once
    assert pool.replicas[0].up and pool.replicas[0].cooling_until == 1030
    clock.now += 29
    assert (await pool.generate(ask(p))).choices[0].text.startswith("b says")
    clock.now += 2
    assert (await pool.generate(ask(p))).choices[0].text.startswith("a says")


async def test_retry_after_is_waited_out_when_no_other_replica_can_take_the_call() -> None:
    waits: list[float] = []
    clock = Clock()
    clock_before = clock.now

    async def sleep_and_tick(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    a = Server("a")
    pool = make_pool(a, slots=2, clock=clock, retry_policy=RetryPolicy(max_retries=2, sleep=sleep_and_tick))
    a.fail_next = [BackendStatusError("busy", 503, "a", retry_after=0.25)]
    response = await pool.generate(ask("hi"))
    assert response.choices[0].text.startswith("a says")
    assert waits == [0.25] and clock.now == clock_before + 0.25  # the retry layer slept exactly the Retry-After
    assert pool.replicas[0].up  # a 503 that says when to come back is a pause, not an outage


async def test_every_replica_down_is_one_error_naming_each_replica() -> None:
    a, b = Server("a"), Server("b")
    a.down = b.down = True
    pool = make_pool(a, b, health_interval_s=60.0)
    with pytest.raises(AllReplicasDown) as caught:
        await pool.generate(ask("hi"))
    error = caught.value
    assert isinstance(error, BackendError) and set(error.replicas) == {"a", "b"}
    assert "every replica of pool m is down" in str(error)
    assert "a: BackendUnreachable: cannot reach backend at a" in str(error) and "cannot reach backend at b" in str(error)
    await pool.aclose()


async def test_a_request_error_is_not_sent_to_another_replica() -> None:
    a, b = Server("a"), Server("b")
    pool = make_pool(a, b)
    p = prompt_for("a", ["a", "b"])
    a.fail_next = [BackendStatusError("bad request", 400, "a")]
    with pytest.raises(BackendStatusError, match="bad request"):
        await pool.generate(ask(p))
    assert (len(a.backend.requests), len(b.backend.requests)) == (1, 0)
    assert pool.replicas[0].up


class CutStream(Backend):
    """Streams one delta, then (when `cut`) dies; its generate always fails when `dead`."""

    def __init__(self, name: str, *, cut: bool = False, dead: bool = False) -> None:
        self.name, self.cut, self.dead, self.streams = name, cut, dead, 0

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        if self.dead:
            raise BackendUnreachable(f"{self.name} is gone", self.name)
        return BackendResponse([Choice(f"{self.name} text", "stop", 2)], 3, 0.0, request.model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.streams += 1
        if self.dead:
            raise BackendUnreachable(f"{self.name} is gone", self.name)
        yield StreamEvent(delta=f"{self.name} ")
        if self.cut:
            raise BackendUnreachable(f"{self.name} dropped the stream", self.name)
        yield StreamEvent(response=await self.generate(request))


async def test_a_stream_fails_over_before_its_first_event_but_never_after() -> None:
    dead, alive = CutStream("a", dead=True), CutStream("b")
    pool = PoolBackend("m", [Replica(dead, 1), Replica(alive, 1)], health_interval_s=60.0)
    p = prompt_for("a", ["a", "b"])
    events = [e async for e in pool.stream(ask(p))]
    assert events[0].delta == "b " and events[-1].response is not None
    await pool.aclose()

    cut, other = CutStream("a", cut=True), CutStream("b")
    pool = PoolBackend("m", [Replica(cut, 1), Replica(other, 1)], health_interval_s=60.0)
    deltas = []
    with pytest.raises(BackendUnreachable, match="dropped the stream"):
        async for event in pool.stream(ask(p)):
            deltas.append(event.delta)
    assert deltas == ["a "] and other.streams == 0  # the text already sent is not sent again from b
    assert not pool.replicas[0].up and [r.in_use for r in pool.replicas] == [0, 0]
    await pool.aclose()


async def test_each_replica_is_asked_under_its_own_model_name() -> None:
    a = Server("a")
    pool = PoolBackend("mine", [Replica(a.backend, 2, model="org/Served-Model-7B")])
    await pool.generate(GenerationRequest.from_prompt("hi", "mine"))
    assert a.backend.requests[0].model == "org/Served-Model-7B"


async def test_aclose_stops_the_health_checks_and_closes_the_replicas() -> None:
    a, b = Server("a"), Server("b")
    pool = make_pool(a, b)
    a.down = True
    await pool.generate(ask(prompt_for("a", ["a", "b"])))
    (probe,) = pool._probes.values()
    closed: list[str] = []
    for server in (a, b):
        server.backend.aclose = lambda name=server.backend.name: _record(closed, name)  # type: ignore[method-assign]
    await pool.aclose()
    assert probe.cancelled() and not pool._probes and closed == ["a", "b"]
    with pytest.raises(BackendError, match="closed"):
        await pool.generate(ask("hi"))


async def test_the_engine_fans_seeded_samples_over_a_pool_and_keeps_them_on_one_replica() -> None:
    caps = {"supports_native_n": True, "seeded_native_n": True, "max_n_per_call": 4}
    a, b = Server("a", **caps), Server("b", **caps)
    pool = make_pool(a, b, slots=4)
    ctx = Engine({"m": pool}).context()
    completions = await ctx.generate(ask("one query", n=8, seed=0, temperature=0.8))
    assert [c.sample_index for c in completions] == list(range(8))
    assert sorted(len(s.backend.requests) for s in (a, b)) == [0, 2]  # two calls of 4, on one replica
    assert ctx.usage.calls == 2


async def test_a_replica_going_out_wakes_the_calls_waiting_for_it() -> None:
    """Calls queued behind a full replica do not wait for one that went out: they go to the live one."""
    a, b = Server("a"), Server("b")
    pool = make_pool(a, b, slots=[1, 1], health_interval_s=60.0)
    a.gate, b.gate = asyncio.Event(), asyncio.Event()
    p = prompt_for("a", ["a", "b"])
    calls = [asyncio.create_task(pool.generate(ask(p, seed=s))) for s in range(4)]
    await until(lambda: a.backend.in_flight == 1 and b.backend.in_flight == 1)
    a.down = True
    a.gate.set()  # a's call now fails (a is down) and goes to b; the queued ones too
    b.gate.set()
    texts = [r.choices[0].text for r in await asyncio.gather(*calls)]
    assert all(t.startswith("b says") for t in texts)
    await pool.aclose()


async def test_calls_wait_for_a_replica_first_come_first_served() -> None:
    """A call of n seeded choices needs n free slots on one replica: single calls that came later do not pass it."""
    caps = {"supports_native_n": True, "seeded_native_n": True, "max_n_per_call": 2}
    a, b = Server("a", **caps), Server("b", **caps)
    pool = make_pool(a, b, slots=2)
    a.gate, b.gate = asyncio.Event(), asyncio.Event()
    p, q = prompt_for("a", ["a", "b"]), prompt_for("b", ["a", "b"])
    held = [asyncio.create_task(pool.generate(ask(p))), asyncio.create_task(pool.generate(ask(q)))]
    await until(lambda: a.backend.in_flight == 1 and b.backend.in_flight == 1)
    wide = asyncio.create_task(pool.generate(ask(p, n=2, seed=10)))  # no replica has 2 free: it waits
    narrow = asyncio.create_task(pool.generate(ask(q, seed=20)))  # would fit on b, but came after
    await until(lambda: len(pool._queue) == 2)  # both decided to wait
    assert b.backend.in_flight == 1 and not narrow.done()
    a.gate.set()  # a drains: the wide call runs there, then the narrow one goes on
    assert len((await wide).choices) == 2
    b.gate.set()
    await asyncio.gather(*held, narrow)
    assert [r.in_use for r in pool.replicas] == [0, 0] and not pool._queue
