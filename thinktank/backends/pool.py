"""Several endpoints that serve one model, as one backend: routing, per-replica caps, health, failover.

    pool = PoolBackend("qwen", [
        Replica(OpenAICompatBackend("http://gpu1:8000/v1", max_retries=0), slots=16, health=http_health("http://gpu1:8000/health")),
        Replica(OpenAICompatBackend("http://gpu2:8000/v1", max_retries=0), slots=16, health=http_health("http://gpu2:8000/health")),
    ])
    engine = Engine({"qwen": pool})  # the engine sees one model with 32 slots

Routing. Every sample of one query has the same prompt, so it goes to the same replica and that
server's prefix cache is reused: the replicas are ranked by rendezvous hashing of the prompt (the
messages and tools), and a call goes to the first live one in that order. When that replica is full
it goes to the least-loaded live replica with room (outstanding slots / slots), and when none has
room it waits for one, first come first served. A replica runs at most `slots` at once; a call of n seeded choices (llama-server)
or n fanned-out calls holds n of them, as the engine's own slot accounting does.

Failures. A call that fails because of its replica (unreachable, timed out, HTTP 502/503/504) takes
that replica out, and it is polled (`health`, e.g. its /health, with a deadline) every
`health_interval_s` until it answers; then it is back. A 429/503 with Retry-After keeps calls off that
replica for that long. An idempotent call (`generate`, `embed`, a stream before its first event) then
goes at once to the next live replica; once every live one was tried, the pool's `RetryPolicy` (the one
retry layer, `retry.py`) waits, honouring the last Retry-After, and tries again. A stream that already
yielded text is not re-sent (the text would be duplicated): its error is raised. Every replica out is
`AllReplicasDown`, naming each replica and why (`thinktank serve` answers it with a 503).

The pool owns its replicas' backends (`aclose` closes them); give them `max_retries=0`, so that retrying
is the pool's, which can try another replica instead of the same one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import httpx

from thinktank.backends.base import Backend, Capabilities, StreamEvent, aclose_events
from thinktank.backends.http_errors import map_httpx_errors, status_error
from thinktank.backends.retry import RetryPolicy
from thinktank.exceptions import (
    AllReplicasDown,
    BackendDied,
    BackendError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    is_retryable,
)
from thinktank.types import BackendResponse, EmbeddingRequest, EmbeddingResponse, GenerationRequest

__all__ = ["HealthCheck", "PoolBackend", "Replica", "affinity_key", "http_health"]

log = logging.getLogger("thinktank.backends.pool")

_T = TypeVar("_T")

#: answers that mean the server (or the proxy in front of it) is not serving, rather than that this request failed
_DOWN_STATUS = frozenset({502, 503, 504})

#: raises (a `BackendError`, or anything) when the replica is not healthy; returns when it is
HealthCheck = Callable[[], Awaitable[None]]


def http_health(url: str, *, api_key: str | None = None, timeout_s: float = 5.0) -> HealthCheck:
    """A health check that GETs `url` (llama-server, vLLM, SGLang: `<root>/health`; OpenAI: `/v1/models`)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def check() -> None:
        async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as client:
            with map_httpx_errors(url):
                response = await client.get(url)
        if response.status_code >= 400:
            raise status_error(response, url)

    return check


@dataclass(eq=False)
class Replica:
    """One endpoint of a pool and its live state (what the router reads)."""

    backend: Backend
    #: how many requests this server runs at once
    slots: int
    #: polled while the replica is out; None: it is trusted again after one health interval
    health: HealthCheck | None = None
    #: the name this server knows the model by (None: the request's, i.e. the pool's)
    model: str | None = None
    in_use: int = field(default=0, init=False)
    up: bool = field(default=True, init=False)
    #: why the replica is out: the failure that took it out, and then its last failed health check
    reason: str = field(default="", init=False)
    failure: str = field(default="", init=False)
    cooling_until: float = field(default=0.0, init=False)
    calls: int = field(default=0, init=False)
    peak_in_use: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"a replica needs at least one slot, got {self.slots} for {self.backend.name}")

    @property
    def name(self) -> str:
        return self.backend.name

    def weight(self, n: int) -> int:
        """Slots a call of n choices takes here: n where each choice is its own server job, else 1."""
        caps = self.backend.capabilities
        k = n if caps.seeded_native_n or not caps.supports_native_n else 1
        return min(max(1, k), self.slots)


def affinity_key(request: GenerationRequest) -> bytes:
    """What decides a call's replica: its prompt (messages and tools), not its seed, n or temperature."""
    text = json.dumps([request.messages, request.tools], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _rank(key: bytes, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(key + name.encode(), digest_size=8).digest(), "big")


class PoolBackend(Backend):
    def __init__(
        self,
        model: str,
        replicas: Sequence[Replica],
        *,
        retry_policy: RetryPolicy | None = None,
        health_interval_s: float = 2.0,
        health_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not replicas:
            raise ValueError(f"a pool needs at least one replica (model {model!r})")
        names = [r.name for r in replicas]
        if len(set(names)) < len(names):
            raise ValueError(f"the replicas of pool {model!r} must be distinct endpoints, got {names}")
        self.model = model
        self.replicas = list(replicas)
        self.name = f"pool {model}"
        caps = [r.backend.capabilities for r in self.replicas]
        seeded = all(c.seeded_native_n for c in caps)
        self.capabilities = Capabilities(
            max_concurrency=sum(r.slots for r in self.replicas),
            supports_native_n=all(c.supports_native_n for c in caps),
            seeded_native_n=seeded,
            # a seeded call of n holds n slots of one replica, so it must fit the smallest
            max_n_per_call=min(
                min(c.max_n_per_call, r.slots) if seeded else c.max_n_per_call for c, r in zip(caps, self.replicas, strict=True)
            ),
            supports_embeddings=all(c.supports_embeddings for c in caps),
        )
        self.retry_policy = retry_policy or RetryPolicy()
        self.health_interval_s = health_interval_s
        self.health_timeout_s = health_timeout_s
        self._clock = clock
        self._waiters: list[asyncio.Future[None]] = []
        self._queue: deque[object] = deque()  # the calls waiting for a replica, in arrival order
        self._probes: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # --- the backend contract ------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        self._check_open()
        key = affinity_key(request)
        return await self.retry_policy.call(
            lambda: self._attempt(key, request.n, lambda r: r.backend.generate(self._as_served(r, request)))
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self._check_open()
        key = hashlib.blake2b("\n".join(request.texts).encode(), digest_size=16).digest()
        return await self.retry_policy.call(
            lambda: self._attempt(key, 1, lambda r: r.backend.embed(replace(request, model=r.model) if r.model else request))
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.n != 1:
            raise ValueError(f"stream makes one sample, got n={request.n}")
        self._check_open()
        replica, weight, events, first = await self.retry_policy.call(lambda: self._open_stream(request))
        try:
            yield first
            async for event in events:
                yield event
        except Exception as exc:  # text went out already: not re-sent elsewhere (it would be duplicated)
            self._note_failure(replica, exc)
            raise
        finally:
            await aclose_events(events)
            self._release(replica, weight)

    async def aclose(self) -> None:
        self._closed = True
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        for task in probes:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas:
            await replica.backend.aclose()

    # --- routing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"backend {self.name} is closed", self.name)

    @staticmethod
    def _as_served(replica: Replica, request: GenerationRequest) -> GenerationRequest:
        return request.with_(model=replica.model) if replica.model else request

    async def _attempt(self, key: bytes, n: int, call: Callable[[Replica], Awaitable[_T]]) -> _T:
        """One try of an idempotent call: on the affinity replica (or the least-loaded one), failing over at once to
        the other live replicas; raises when every live replica failed, for the retry policy to decide."""
        tried: list[Replica] = []
        last: Exception | None = None
        while True:
            replica, weight = await self._acquire(key, n, tried, last)
            try:
                return await call(replica)
            except Exception as exc:
                self._note_failure(replica, exc)
                if not _fails_over(exc):
                    raise
                tried.append(replica)
                last = exc
            finally:
                self._release(replica, weight)

    async def _open_stream(self, request: GenerationRequest) -> tuple[Replica, int, AsyncIterator[StreamEvent], StreamEvent]:
        """One try at opening a stream: a replica that fails before the first event is failed over like `_attempt`."""
        key = affinity_key(request)
        tried: list[Replica] = []
        last: Exception | None = None
        while True:
            replica, weight = await self._acquire(key, 1, tried, last)
            events = replica.backend.stream(self._as_served(replica, request))
            try:
                first = await anext(aiter(events))
            except BaseException as exc:
                await aclose_events(events)
                self._release(replica, weight)
                if not isinstance(exc, Exception):
                    raise
                self._note_failure(replica, exc)
                if not _fails_over(exc):
                    raise
                tried.append(replica)
                last = exc
                continue
            return replica, weight, events, first

    async def _acquire(self, key: bytes, n: int, tried: list[Replica], last: Exception | None) -> tuple[Replica, int]:
        """Wait for a live, untried replica with room for the call, and take its slots.

        First come, first served (as `engine/slots.py`): the least-loaded choice spreads single calls evenly,
        so a call of n seeded choices, which needs n free slots on one replica, would otherwise wait behind
        them for as long as they keep coming."""
        ranked = sorted(self.replicas, key=lambda r: _rank(key, r.name), reverse=True)
        ticket = object()
        self._queue.append(ticket)
        try:
            while True:
                self._check_open()
                now = self._clock()
                live = [r for r in ranked if r.up and r.cooling_until <= now and r not in tried]
                if not live:
                    raise self._unavailable(last, now)
                with_room = [r for r in live if r.slots - r.in_use >= r.weight(n)] if self._queue[0] is ticket else []
                if with_room:
                    # the prompt's own replica if it has room, else the least loaded (rank order breaks ties)
                    replica = live[0] if live[0] in with_room else min(with_room, key=lambda r: r.in_use / r.slots)
                    weight = replica.weight(n)
                    replica.in_use += weight
                    replica.calls += 1
                    replica.peak_in_use = max(replica.peak_in_use, replica.in_use)
                    return replica, weight
                cooling = [r.cooling_until - now for r in ranked if r.up and r.cooling_until > now and r not in tried]
                await self._wait_for_change(min(cooling) if cooling else None)
        finally:
            self._queue.remove(ticket)
            self._notify()  # the next in line decides now

    def _unavailable(self, last: Exception | None, now: float) -> Exception:
        if not any(r.up for r in self.replicas):
            return AllReplicasDown(self.name, {r.name: r.reason for r in self.replicas})
        if last is not None:  # every live replica failed this try: the retry policy waits (Retry-After honoured)
            return last
        waits = {r.name: r.cooling_until - now for r in self.replicas if r.up}
        listed = ", ".join(f"{name} for {wait:.1f}s" for name, wait in waits.items())
        return BackendStatusError(
            f"every live replica of {self.name} asked to wait (Retry-After): {listed}",
            429,
            self.name,
            retry_after=min(waits.values()),
        )

    def _release(self, replica: Replica, weight: int) -> None:
        replica.in_use -= weight
        self._notify()

    async def _wait_for_change(self, timeout_s: float | None) -> None:
        """Until a slot frees, a replica goes out or comes back, or (`timeout_s`) a Retry-After ends."""
        change: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(change)
        try:
            async with asyncio.timeout(timeout_s):
                await change
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(change)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for change in waiters:
            if not change.done():
                change.set_result(None)

    # --- health ----------------------------------------------------------------------------

    def _note_failure(self, replica: Replica, exc: BaseException) -> None:
        if isinstance(exc, BackendStatusError) and exc.retry_after is not None:
            replica.cooling_until = max(replica.cooling_until, self._clock() + exc.retry_after)
        elif isinstance(exc, BackendUnreachable | BackendTimeout | BackendDied) or (
            isinstance(exc, BackendStatusError) and exc.status_code in _DOWN_STATUS
        ):
            self._take_out(replica, f"{type(exc).__name__}: {exc}")

    def _take_out(self, replica: Replica, reason: str) -> None:
        replica.failure = replica.reason = reason
        if not replica.up:
            return
        replica.up = False
        log.warning("%s: replica %s is out (%s); polling its health every %.1fs", self.name, replica.name, reason,
                    self.health_interval_s)  # fmt: skip
        self._notify()  # waiters re-decide: this replica is no longer theirs to wait for
        if not self._closed and replica.name not in self._probes:
            task = asyncio.get_running_loop().create_task(self._probe(replica))
            self._probes[replica.name] = task
            task.add_done_callback(lambda _: self._probes.pop(replica.name, None))

    async def _probe(self, replica: Replica) -> None:
        """Poll an out replica's health every interval, each check with a deadline, until it answers."""
        while True:
            await asyncio.sleep(self.health_interval_s)  # the health interval: how often an out replica is asked
            try:
                if replica.health is not None:
                    async with asyncio.timeout(self.health_timeout_s):
                        await replica.health()
            except TimeoutError:
                replica.reason = f"{replica.failure}; then its health check timed out after {self.health_timeout_s:.1f}s"
                continue
            except Exception as exc:
                replica.reason = f"{replica.failure}; then its health check failed: {exc}"
                continue
            replica.up, replica.reason, replica.failure, replica.cooling_until = True, "", "", 0.0
            log.warning("%s: replica %s is back", self.name, replica.name)
            self._notify()
            return


def _fails_over(exc: BaseException) -> bool:
    """Whether another replica may take the call: the failure was the replica's, not the request's."""
    return is_retryable(exc) or isinstance(exc, BackendDied)
