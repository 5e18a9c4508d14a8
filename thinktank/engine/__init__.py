"""The engine: routing, caching, fan-out, budgets and accounting for every LLM call."""

from thinktank.engine.budget import Budget, BudgetTracker
from thinktank.engine.cache import ResponseCache, SampleCache
from thinktank.engine.engine import Context, Engine
from thinktank.engine.trace import CallRecord, TraceNode

__all__ = ["Budget", "BudgetTracker", "CallRecord", "Context", "Engine", "ResponseCache", "SampleCache", "TraceNode"]
