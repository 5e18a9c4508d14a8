"""Retrieval quality measures."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["recall_at_k"]


def recall_at_k(retrieved_ids: Iterable[str], gold_ids: Iterable[str]) -> float:
    """The share of `gold_ids` found among `retrieved_ids` (already cut to the top k), in [0, 1].

    A passage id `a.md#2` (a chunk) counts for the gold id `a.md` (its file), so gold can name files.
    """
    retrieved, gold = list(retrieved_ids), set(gold_ids)
    if not gold:
        raise ValueError("recall_at_k needs at least one gold passage id")
    found = set(retrieved) | {i.split("#", 1)[0] for i in retrieved}
    return len(gold & found) / len(gold)
