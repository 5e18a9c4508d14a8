"""The results of a search, shared by the study that produces them and the report that shows them.

A third module so that `study` (which writes the report) and `report` (which reads the front) both import down
to it instead of importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Configuration", "SearchOutcome", "TrialResult", "distinct", "pareto_front"]


class Configuration(Protocol):
    """What the study, the front and the report need of a point of a search space (`space.Config`, `RagConfig`)."""

    def key(self) -> str: ...
    def short_id(self) -> str: ...
    def label(self) -> str: ...
    def to_yaml(self, name: str | None = None) -> str: ...
    def model_dump(self, *, mode: str = "python") -> dict[str, Any]: ...


@dataclass
class TrialResult:
    number: int
    config: Configuration
    metrics: dict[str, Any]  # accuracy, ci95, canonical_accuracy, tokens, usd, latency_s, calls, draws
    feasible: bool

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    @property
    def tokens(self) -> float:
        return float(self.metrics["tokens"])

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.number, "id": self.config.short_id(), "label": self.config.label(), "feasible": self.feasible,
                **self.metrics, "config": self.config.model_dump(mode="json")}  # fmt: skip


def _dominates(a: TrialResult, b: TrialResult, cost: str) -> bool:
    ca, cb = float(a.metrics[cost]), float(b.metrics[cost])
    return a.accuracy >= b.accuracy and ca <= cb and (a.accuracy > b.accuracy or ca < cb)


def distinct(results: Sequence[TrialResult]) -> list[TrialResult]:
    seen: dict[str, TrialResult] = {}
    for r in results:
        seen.setdefault(r.config.key(), r)
    return list(seen.values())


def pareto_front(results: Sequence[TrialResult], cost: str = "tokens") -> list[TrialResult]:
    """Non-dominated feasible configurations (accuracy up, `cost` down), cheapest first."""
    pool = [r for r in distinct(results) if r.feasible]
    front = [r for r in pool if not any(_dominates(o, r, cost) for o in pool)]
    return sorted(front, key=lambda r: (float(r.metrics[cost]), -r.accuracy))


@dataclass
class SearchOutcome:
    run_dir: Path
    results: list[TrialResult]
    front: list[TrialResult]
    chosen: TrialResult
    costs: dict[str, Any]
    confirmation: dict[str, Any] | None = None
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    adaptive: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)
