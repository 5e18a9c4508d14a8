"""A context that logs every completion the pool's techniques make, with what the call cost."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from thinktank.engine.budget import BudgetTracker
from thinktank.engine.cache import CachedSample
from thinktank.engine.engine import Context, Engine
from thinktank.engine.trace import TraceNode
from thinktank.search.pool.types import Call
from thinktank.types import Completion, GenerationRequest

__all__ = ["Logged", "Meter", "meter"]


@dataclass
class Logged:
    node: str
    index: int  # the call's seed: request seed + sample index
    text: str
    call: Call


@dataclass
class Meter(Context):
    """A context that logs every completion with its full cost (cache hits looked up in the response cache)."""

    log: list[Logged] = field(default_factory=list)

    async def generate(self, request: GenerationRequest) -> list[Completion]:
        keys = self.engine.cache_keys(request, self)  # before the call: what the engine looks up for it
        out = await super().generate(request)
        wanted = [keys[c.sample_index] for c in out if c.cached]
        found = await self.engine.cache.lookup(wanted) if wanted and self.engine.cache else {}
        for c in out:
            call = self._call(request, c, found.get(keys[c.sample_index]))
            self.log.append(Logged(self.node.name, (request.seed or 0) + c.sample_index, c.text, call))
        return out

    def _call(self, request: GenerationRequest, c: Completion, hit: CachedSample | None) -> Call:
        u = c.usage
        if not c.cached:
            return Call(request.model, u.prompt_tokens, u.completion_tokens, u.latency_s, False)
        if hit is None:
            return Call(request.model, 0, u.saved_tokens, None, True)
        return Call(request.model, hit.prompt_tokens, hit.completion_tokens, None, True)

    def child(self, name: str) -> Meter:
        return replace(self, node=self.node.child(name))  # the same log


def meter(engine: Engine, name: str) -> Meter:
    return Meter(engine=engine, budget=BudgetTracker.start(None), node=TraceNode(name))
