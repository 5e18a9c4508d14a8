"""The call tree of one query: nodes (techniques) holding their LLM calls.

Every call lands in exactly one node, so usage rolls up node -> query -> run by summing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from thinktank.usage import Usage


@dataclass
class CallRecord:
    model: str
    backend: str
    sample_indices: list[int]
    usage: Usage
    status: str  # "ok" | "cached" | "error" | "cancelled"
    started_s: float  # seconds since the query started
    latency_s: float
    finish_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    ended_s: float | None = None  # when the call returned (after its slot wait and the HTTP call); None: not yet
    operation: str = "chat"  # "chat" | "embeddings": the GenAI operation, for exported spans
    temperature: float | None = None
    max_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "sample_indices": self.sample_indices,
            "usage": self.usage.to_dict(),
            "status": self.status,
            "started_s": round(self.started_s, 4),
            "latency_s": round(self.latency_s, 4),
            "ended_s": None if self.ended_s is None else round(self.ended_s, 4),
            "finish_reasons": self.finish_reasons,
            "error": self.error,
        }


@dataclass
class TraceNode:
    name: str
    origin: float = field(default_factory=time.monotonic)  # the query's start, shared by the tree
    started_s: float = 0.0  # since `origin`: when this node began
    ended_s: float | None = None  # since `origin`: when it finished (set by `close`); None: still running
    technique: str | None = None  # the technique class an architecture node runs (None: the query, a sub-step)
    calls: list[CallRecord] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # verdicts, scores, errors of the node
    error: str | None = None

    def child(self, name: str) -> TraceNode:
        node = TraceNode(name, origin=self.origin, started_s=self.now())
        self.children.append(node)
        return node

    def now(self) -> float:
        return time.monotonic() - self.origin

    def close(self) -> None:
        """Mark the node finished now (its span's end when exported)."""
        self.ended_s = self.now()

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total += call.usage
        for child in self.children:
            total += child.usage
        return total

    def walk(self) -> list[TraceNode]:
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "usage": self.usage.to_dict(),
            "calls": [c.to_dict() for c in self.calls],
            "children": [c.to_dict() for c in self.children],
            "notes": self.notes,
            "error": self.error,
        }
