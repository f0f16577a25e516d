"""Blind A/B statistics against cases worked out by hand."""

from __future__ import annotations

import pytest

from runner.data import abtest
from runner.data.abtest import Judgement


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution_worked_by_hand():
    # Four items, one vote each, scoring 1, 1, ½ (a tie) and 0. A resample draws four items with
    # replacement, so its sum S is the sum of four draws that are 1 w.p. ½, ½ w.p. ¼, 0 w.p. ¼:
    #   P(S = 0)   = (¼)⁴                        = 1/256
    #   P(S = ½)   = 4 · ¼ · (¼)³                = 4/256
    #   P(S = 1)   = 4 · ½ · (¼)³ + 6 · (¼)⁴     = 14/256
    # so P(mean ≤ 1/8) = 5/256 ≈ 0.020 < 0.025 ≤ P(mean ≤ 1/4) = 19/256 ≈ 0.074: the 2.5th
    # percentile is 1/4. P(mean = 1) = (½)⁴ = 1/16 > 0.025, so the 97.5th percentile is 1.
    clusters = [(1.0, 1), (1.0, 1), (0.5, 1), (0.0, 1)]
    assert abtest.bootstrap_ratio(clusters, resamples=20_000, seed=7) == (0.25, 1.0)


def test_bootstrap_interval_of_a_unanimous_record_is_a_point_and_none_without_votes():
    assert abtest.bootstrap_ratio([(1.0, 1)] * 5, seed=1) == (1.0, 1.0)
    assert abtest.bootstrap_ratio([], seed=1) is None
    assert abtest.bootstrap_ratio([(0.0, 0)], seed=1) is None


def test_bootstrap_resamples_items_with_their_votes():
    # Two items, two votes each: item 1 won by A twice, item 2 a tie and a loss. Resamples are
    # {1,1}: 4/4 (p ¼), {1,2}: 2.5/4 (p ½), {2,2}: 1/4 (p ¼): the interval is [0.25, 1.0], where
    # treating the four votes as independent would allow a mean of 0 (all four losses drawn).
    judged = [
        Judgement(1, "A", "B", 1.0),
        Judgement(1, "A", "B", 1.0),
        Judgement(2, "A", "B", 0.5),
        Judgement(2, "A", "B", 0.0),
    ]
    record = abtest.standing(judged, "A", seed=3)
    assert (record.points, record.votes, record.win_rate) == (2.5, 4, 0.625)
    assert record.interval == (0.25, 1.0)
    other = abtest.standing(judged, "B", seed=3)
    assert (other.points, other.votes, other.win_rate) == (1.5, 4, 0.375)


def test_bradley_terry_two_versions_is_the_odds_of_their_record():
    # A beat B 3 times, B beat A once: the MLE has p_A / p_B = 3, so (0.75, 0.25).
    judged = [Judgement(i, "A", "B", 1.0) for i in range(3)] + [Judgement(9, "B", "A", 1.0)]
    strength = abtest.bradley_terry(judged)
    assert strength["A"] == pytest.approx(0.75, abs=1e-8)
    assert strength["B"] == pytest.approx(0.25, abs=1e-8)


def test_bradley_terry_three_versions_with_ties_matches_the_likelihood_equations():
    # A beats B 2–1 and C 2–1; B and C tie twice (a tie counts half to each side). By symmetry
    # p_B = p_C; A's equation W_A = Σ_j n_Aj p_A / (p_A + p_j) gives 4 = 6 p_A / (p_A + p_B), so
    # p_A = 2 p_B: (½, ¼, ¼). B's: W_B = 1 + 1 = 3 · ⅓ + 2 · ½ = 2. ✓
    judged = [
        Judgement(1, "A", "B", 1.0),
        Judgement(2, "A", "B", 1.0),
        Judgement(3, "B", "A", 1.0),
        Judgement(4, "A", "C", 1.0),
        Judgement(5, "C", "A", 0.0),
        Judgement(6, "C", "A", 1.0),
        Judgement(7, "B", "C", 0.5),
        Judgement(8, "C", "B", 0.5),
    ]
    strength = abtest.bradley_terry(judged)
    assert strength == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.25}, abs=1e-8)
    assert abtest.standing(judged, "A").win_rate == pytest.approx(4 / 6)


def test_bradley_terry_gives_a_version_that_never_won_no_strength():
    # A and B beat each other once and both beat C: C's strength is 0, A and B share the rest.
    judged = [
        Judgement(1, "A", "B", 1.0),
        Judgement(2, "B", "A", 1.0),
        Judgement(3, "A", "C", 1.0),
        Judgement(4, "B", "C", 1.0),
    ]
    assert abtest.bradley_terry(judged) == pytest.approx({"A": 0.5, "B": 0.5, "C": 0.0}, abs=1e-8)


def test_head_to_head_orients_every_vote_from_the_first_version():
    judged = [Judgement(1, "A", "B", 1.0), Judgement(2, "B", "A", 0.5), Judgement(3, "C", "A", 0.0)]
    assert [j.score for j in abtest.head_to_head(judged, "A", "B")] == [1.0, 0.5]
    assert [j.score for j in abtest.head_to_head(judged, "B", "A")] == [0.0, 0.5]


def test_votes_score_for_the_version_shown_as_a():
    assert [abtest.score_of(c) for c in ("a", "b", "tie")] == [1.0, 0.0, 0.5]
