"""Per-query budgets: tokens, dollars, calls and wall time.

A tracker is shared by every call of one query. It refuses a new call once a limit is
reached and clamps `max_tokens` so a single call cannot overshoot the token limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pydantic import BaseModel, Field

from thinktank.exceptions import BudgetExceeded
from thinktank.usage import Usage


class Budget(BaseModel):
    """Limits for one query; None means unlimited."""

    model_config = {"frozen": True}

    max_tokens: int | None = Field(None, ge=1)
    max_usd: float | None = Field(None, gt=0)
    max_calls: int | None = Field(None, ge=1)
    max_wall_s: float | None = Field(None, gt=0)


@dataclass
class BudgetTracker:
    budget: Budget
    spent: Usage
    started: float

    @classmethod
    def start(cls, budget: Budget | None = None) -> BudgetTracker:
        return cls(budget or Budget(), Usage(), time.monotonic())

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def remaining_wall_s(self) -> float | None:
        if self.budget.max_wall_s is None:
            return None
        return self.budget.max_wall_s - self.elapsed_s()

    def remaining_tokens(self) -> int | None:
        if self.budget.max_tokens is None:
            return None
        return self.budget.max_tokens - self.spent.total_tokens

    def exceeded(self) -> str | None:
        """Which limit is used up, or None."""
        b, s = self.budget, self.spent
        if b.max_tokens is not None and s.total_tokens >= b.max_tokens:
            return f"token budget of {b.max_tokens} used up ({s.total_tokens} spent)"
        if b.max_usd is not None and s.cost_usd >= b.max_usd:
            return f"$ budget of {b.max_usd} used up (${s.cost_usd:.6f} spent)"
        if b.max_calls is not None and s.calls >= b.max_calls:
            return f"call budget of {b.max_calls} used up"
        remaining = self.remaining_wall_s()
        if remaining is not None and remaining <= 0:
            return f"wall-time budget of {b.max_wall_s}s used up"
        return None

    def check(self) -> None:
        reason = self.exceeded()
        if reason:
            raise BudgetExceeded(reason, self.spent + Usage())

    def record(self, usage: Usage) -> None:
        self.spent += usage
