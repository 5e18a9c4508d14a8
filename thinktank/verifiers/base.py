"""What every verifier returns: a verdict with a readable reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    passed: bool
    reason: str  # short and human: "passed 3/3 checks", "timeout after 5.0s", "AssertionError: ..."
    score: float = 0.0  # fraction of checks passed, 0..1
    details: dict[str, Any] = field(default_factory=dict)  # stdout/stderr tails, outputs, error class
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "score": self.score,
            "details": self.details,
            "duration_s": round(self.duration_s, 4),
        }
