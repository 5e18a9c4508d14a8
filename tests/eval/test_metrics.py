import pytest

from thinktank.eval.metrics import paired_difference, pass_at_k, percentile, wilson_interval


def test_wilson_matches_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 0.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2


def test_pass_at_k_unbiased():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 3, 2) == pytest.approx(1 - (7 * 6) / (10 * 9))
    assert pass_at_k(4, 2, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_percentile():
    assert percentile([3, 1, 2, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert percentile([], 50) == 0.0


def test_paired_difference_counts_discordant_problems_and_is_exact_for_mcnemar():
    a = [True] * 10 + [False] * 10 + [True] * 2 + [False] * 8
    b = [True] * 10 + [False] * 10 + [False] * 2 + [True] * 8
    d = paired_difference(a, b)
    assert (d.problems, d.only_a, d.only_b) == (30, 2, 8)
    assert d.delta == pytest.approx(6 / 30)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * 56 / 1024
    assert d.p_value == pytest.approx(112 / 1024)
    assert d.low < d.delta < d.high
    # pairing: the paired interval is narrower than the gap between two independent Wilson intervals allows
    assert d.high - d.low < 0.5


def test_paired_difference_edge_cases():
    same = paired_difference([True, False, True], [True, False, True])
    assert same.delta == same.low == same.high == 0.0 and same.p_value == 1.0
    assert paired_difference([], []).problems == 0
    all_won = paired_difference([False] * 12, [True] * 12)
    assert all_won.delta == all_won.low == 1.0 and all_won.p_value == pytest.approx(2 / 4096)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([True], [True, False])
    # seeded: the same inputs give the same interval
    assert paired_difference([True, False] * 5, [True] * 10) == paired_difference([True, False] * 5, [True] * 10)
