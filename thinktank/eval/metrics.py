"""Evaluation metrics: accuracy with a Wilson interval, unbiased pass@k, percentiles, paired run differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0, 0) for no trials."""
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al., 2021) from n samples of which c are correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class PairedDelta:
    """Accuracy of B minus accuracy of A on the same problems, with a paired 95% interval and McNemar's test."""

    problems: int
    delta: float
    low: float
    high: float
    only_a: int  # problems A solved and B did not
    only_b: int
    p_value: float


def paired_difference(a: Sequence[bool], b: Sequence[bool], *, resamples: int = 20_000, seed: int = 0) -> PairedDelta:
    """Two runs on the same problems are paired: most problems are solved by both or by neither, so the
    difference is far tighter than two independent intervals suggest. The interval is a seeded paired
    bootstrap (problems resampled, outcomes kept together); the p-value is McNemar's exact test on the
    discordant problems (two-sided binomial, 1/2 each way)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return PairedDelta(0, 0.0, 0.0, 0.0, 0, 0, 1.0)
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    only_a, only_b = int((diffs < 0).sum()), int((diffs > 0).sum())
    discordant = only_a + only_b
    tail = sum(math.comb(discordant, j) for j in range(min(only_a, only_b) + 1)) / 2**discordant
    return PairedDelta(n, float(diffs.mean()), float(low), float(high), only_a, only_b, min(1.0, 2 * tail))
