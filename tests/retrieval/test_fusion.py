"""Reciprocal rank fusion and recall@k."""

import pytest

from thinktank.retrieval import RRF_K, recall_at_k, reciprocal_rank_fusion


def test_rrf_sums_reciprocal_ranks_with_k_60():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]])
    assert RRF_K == 60
    assert fused[0] == ("b", pytest.approx(1 / 62 + 1 / 61))
    assert dict(fused)["a"] == pytest.approx(1 / 61)
    assert dict(fused)["d"] == pytest.approx(1 / 62)
    assert [item for item, _ in fused] == ["b", "a", "d", "c"]  # d (rank 2) beats c (rank 3)


def test_rrf_ties_keep_first_seen_order():
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert reciprocal_rank_fusion([["a"], []], k=1) == [("a", 0.5)]


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c"], ["b", "z"]) == 0.5
    assert recall_at_k(iter(["doc.md#2"]), ["doc.md"]) == 1.0  # a chunk counts for its file
    assert recall_at_k([], ["a"]) == 0.0
    with pytest.raises(ValueError, match="at least one gold"):
        recall_at_k(["a"], [])
