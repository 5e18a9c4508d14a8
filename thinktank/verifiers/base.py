"""What every verifier returns (a verdict with a readable reason), and the one method every verifier has.

    verdict = await verifier.check(answer, reference)

`reference` is whatever that verifier grades against: `HiddenTests` for the Python sandbox, `GoldQuery`
for SQL, the reference answer text for math. A task kind (`thinktank.kinds`) builds it from the problem's
hidden checks, so the grader never needs to know which verifier it is talking to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = ["Verdict", "Verifier"]

R_contra = TypeVar("R_contra", contravariant=True)


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


class Verifier(Protocol[R_contra]):
    """Grades one answer against a reference; a coroutine, since most verifiers run something."""

    async def check(self, answer: str, reference: R_contra) -> Verdict: ...
