"""Tests for runner.data.agreement: hand-computed coefficients, consensus rules and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.data.agreement import (
    AgreementSummary,
    Consensus,
    ConsensusStatus,
    agreement_summary,
    cohens_kappa,
    consensus,
    krippendorff_alpha,
    percent_agreement,
)


def two_rater_units(pairs: list[tuple[str, str]]) -> dict[int, dict[str, str]]:
    """Items 0..n-1 rated by raters "a" and "b"."""
    return {i: {"a": x, "b": y} for i, (x, y) in enumerate(pairs)}


# ------------------------------------------------------------------------------------------------
# percent agreement
# ------------------------------------------------------------------------------------------------


def test_percent_agreement_by_hand() -> None:
    units = {
        "x": {"a": "good", "b": "good", "c": "bad"},  # pairs ab agree, ac/bc not -> 1/3
        "y": {"a": "good", "b": "good"},  # 1/1
        "z": {"a": "bad"},  # single vote: ignored
    }
    # mean(1/3, 1) = 2/3
    assert percent_agreement(units) == pytest.approx(2 / 3)


def test_percent_agreement_none_without_pairs() -> None:
    assert percent_agreement({}) is None
    assert percent_agreement({1: {"a": "x"}, 2: {}}) is None


# ------------------------------------------------------------------------------------------------
# Cohen
# ------------------------------------------------------------------------------------------------


def test_cohen_2x2_by_hand() -> None:
    # 10 items: yes/yes 4, yes/no 1, no/yes 2, no/no 3.
    pairs = [("yes", "yes")] * 4 + [("yes", "no")] + [("no", "yes")] * 2 + [("no", "no")] * 3
    # p_o = (4 + 3) / 10 = 0.7
    # a: yes 5, no 5; b: yes 6, no 4
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.3 + 0.2 = 0.5
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert cohens_kappa(two_rater_units(pairs), "a", "b") == pytest.approx(0.4)


def test_cohen_wikipedia_example() -> None:
    # Wikipedia "Cohen's kappa" example: 50 proposals, yes/yes 20, a-yes/b-no 5, a-no/b-yes 10, no/no 15.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.4
    assert cohens_kappa(two_rater_units(pairs), "a", "b") == pytest.approx(0.4)


def test_cohen_three_labels_by_hand() -> None:
    # Confusion matrix (rows: rater a, columns: rater b) over labels x, y, z:
    #        x  y  z
    #   x [  3, 1, 0 ]
    #   y [  0, 4, 1 ]
    #   z [  1, 0, 2 ]
    matrix = {"x": {"x": 3, "y": 1, "z": 0}, "y": {"x": 0, "y": 4, "z": 1}, "z": {"x": 1, "y": 0, "z": 2}}
    pairs = [(a, b) for a, row in matrix.items() for b, n in row.items() for _ in range(n)]
    assert len(pairs) == 12
    # p_o = (3 + 4 + 2) / 12 = 3/4
    # a marginals: x 4, y 5, z 3; b marginals: x 4, y 5, z 3
    # p_e = (4*4 + 5*5 + 3*3) / 144 = 50/144 = 25/72
    # kappa = (3/4 - 25/72) / (1 - 25/72) = (54/72 - 25/72) / (47/72) = 29/47
    assert cohens_kappa(two_rater_units(pairs), "a", "b") == pytest.approx(29 / 47)


def test_cohen_only_counts_items_both_rated() -> None:
    units = two_rater_units([("y", "y"), ("n", "n")])
    units[10] = {"a": "y"}  # b missing: ignored
    units[11] = {"b": "n", "c": "y"}  # a missing: ignored
    assert cohens_kappa(units, "a", "b") == 1.0


def test_cohen_degenerate_and_empty() -> None:
    # Both raters always say "y": p_e = 1 -> documented convention 1.0.
    assert cohens_kappa(two_rater_units([("y", "y")] * 3), "a", "b") == 1.0
    assert cohens_kappa(two_rater_units([("y", "y")]), "a", "nobody") is None
    assert cohens_kappa(two_rater_units([("y", "y")]), "a", "a") is None


def test_cohen_total_disagreement_is_negative() -> None:
    # p_o = 0; a: y 1, n 1; b: n 1, y 1 -> p_e = 0.5*0.5 + 0.5*0.5 = 0.5; kappa = -0.5/0.5 = -1
    assert cohens_kappa(two_rater_units([("y", "n"), ("n", "y")]), "a", "b") == pytest.approx(-1.0)


# ------------------------------------------------------------------------------------------------
# Krippendorff
# ------------------------------------------------------------------------------------------------


def test_krippendorff_missing_values_by_hand() -> None:
    units = {
        "u1": {"A": "a", "B": "a", "C": "a"},
        "u2": {"A": "a", "B": "b"},
        "u3": {"A": "b", "B": "b", "C": "a"},
        "u4": {"B": "b", "C": "b"},
        "u5": {"A": "a"},  # one value: not pairable, dropped
    }
    # Coincidences: each ordered pair of values from different raters adds 1 / (m_u - 1).
    #   u1 (m=3, a a a): 6 ordered (a,a) pairs / 2 -> o_aa += 3
    #   u2 (m=2, a b):   (a,b), (b,a) / 1        -> o_ab += 1, o_ba += 1
    #   u3 (m=3, b b a): (b,b) x2 / 2 -> o_bb += 1; (a,b) x2 / 2 -> o_ab += 1; o_ba += 1
    #   u4 (m=2, b b):   2 (b,b) / 1             -> o_bb += 2
    # o_aa = 3, o_ab = o_ba = 2, o_bb = 3; n_a = 5, n_b = 5, n = 10
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n_a*n_b + n_b*n_a) = 1 - 9 * 4 / 50 = 14/50 = 0.28
    assert krippendorff_alpha(units) == pytest.approx(0.28)


def test_krippendorff_reference_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # missing values, nominal alpha = 0.743.
    data = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    units: dict[int, dict[str, str]] = {}
    for rater, values in data.items():
        for unit, value in enumerate(values):
            if value is not None:
                units.setdefault(unit, {})[rater] = str(value)
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_two_raters_no_missing_by_hand() -> None:
    # 2x2 example: yes/yes 4, yes/no 1, no/yes 2, no/no 3 (10 units, n = 20 values).
    # o_yy = 2*4 = 8, o_nn = 2*3 = 6, o_yn = o_ny = 1 + 2 = 3; n_y = 11, n_n = 9
    # alpha = 1 - 19 * 6 / (2 * 11 * 9) = 1 - 114/198 = 84/198 = 14/33
    pairs = [("y", "y")] * 4 + [("y", "n")] + [("n", "y")] * 2 + [("n", "n")] * 3
    assert krippendorff_alpha(two_rater_units(pairs)) == pytest.approx(14 / 33)


def test_krippendorff_degenerate() -> None:
    assert krippendorff_alpha({}) is None
    assert krippendorff_alpha({1: {"a": "x"}, 2: {"b": "y"}}) is None
    assert krippendorff_alpha({1: {"a": "x", "b": "x"}, 2: {"a": "x", "c": "x"}}) == 1.0


# ------------------------------------------------------------------------------------------------
# perfect agreement, summary
# ------------------------------------------------------------------------------------------------


def test_perfect_agreement_everywhere_is_one() -> None:
    units = {i: {"a": lab, "b": lab, "c": lab} for i, lab in enumerate(["x", "y", "z", "x", "y"])}
    assert cohens_kappa(units, "a", "b") == 1.0
    assert krippendorff_alpha(units) == 1.0
    assert percent_agreement(units) == 1.0


def test_summary_two_raters_uses_cohen() -> None:
    pairs = [("yes", "yes")] * 4 + [("yes", "no")] + [("no", "yes")] * 2 + [("no", "no")] * 3
    units = two_rater_units(pairs)
    units[99] = {"a": "yes"}  # single vote: not compared
    summary = agreement_summary(units)
    assert isinstance(summary, AgreementSummary)
    assert summary.method == "cohen"
    assert summary.coefficient == pytest.approx(0.4)
    assert summary.percent == pytest.approx(0.7)
    assert (summary.raters, summary.items_compared) == (2, 10)
    assert summary.pairwise == {("a", "b"): pytest.approx(0.4)}


def test_summary_more_raters_uses_krippendorff() -> None:
    units = {
        "u1": {"A": "a", "B": "a", "C": "a"},
        "u2": {"A": "a", "B": "b"},
        "u3": {"A": "b", "B": "b", "C": "a"},
        "u4": {"B": "b", "C": "b"},
        "u5": {"A": "a"},
    }
    summary = agreement_summary(units)
    assert summary.method == "krippendorff"
    assert summary.coefficient == pytest.approx(0.28)
    assert summary.raters == 3
    assert summary.items_compared == 4
    assert set(summary.pairwise) == {("A", "B"), ("A", "C"), ("B", "C")}
    # A/B share u1 (a,a), u2 (a,b), u3 (b,b): p_o = 2/3; A: a 2, b 1; B: a 1, b 2
    # p_e = (2*1 + 1*2) / 9 = 4/9; kappa = (2/3 - 4/9) / (5/9) = (2/9) / (5/9) = 2/5
    assert summary.pairwise[("A", "B")] == pytest.approx(0.4)
    # percent: u1 1, u2 0, u3 1/3, u4 1 -> mean = (7/3) / 4 = 7/12
    assert summary.percent == pytest.approx(7 / 12)


def test_summary_empty() -> None:
    summary = agreement_summary({})
    assert summary.coefficient is None and summary.percent is None
    assert summary.raters == 0 and summary.items_compared == 0 and summary.pairwise == {}


# ------------------------------------------------------------------------------------------------
# consensus
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "min_votes", "status", "label"),
    [
        ({}, 2, ConsensusStatus.PENDING, None),
        ({"a": "good"}, 2, ConsensusStatus.PENDING, None),
        ({"a": "good"}, 1, ConsensusStatus.AGREED, "good"),
        ({"a": "good", "b": "good"}, 2, ConsensusStatus.AGREED, "good"),
        ({"a": "good", "b": "bad"}, 2, ConsensusStatus.CONFLICT, None),
        ({"a": "good", "b": "good", "c": "bad"}, 2, ConsensusStatus.AGREED, "good"),
        ({"a": "good", "b": "bad", "c": "meh"}, 2, ConsensusStatus.CONFLICT, None),
        ({"a": "x", "b": "x", "c": "y", "d": "y"}, 2, ConsensusStatus.CONFLICT, None),
        ({"a": "x", "b": "x", "c": "y", "d": "z"}, 2, ConsensusStatus.CONFLICT, None),  # plurality only
        ({"a": "x", "b": "x", "c": "x", "d": "z"}, 2, ConsensusStatus.AGREED, "x"),
        ({"a": "x", "b": "x"}, 3, ConsensusStatus.PENDING, None),
    ],
)
def test_consensus_rules(
    votes: dict[str, str], min_votes: int, status: ConsensusStatus, label: str | None
) -> None:
    result = consensus(votes, min_votes=min_votes)
    assert result.status is status
    assert result.label == label


def test_consensus_counts_and_types() -> None:
    result = consensus({"a": "bad", "b": "good", "c": "good"})
    assert result == Consensus(ConsensusStatus.AGREED, "good", {"good": 2, "bad": 1})
    assert list(result.counts) == ["good", "bad"]
    assert ConsensusStatus.AGREED == "agreed"
    with pytest.raises(ValueError):
        consensus({"a": "x"}, min_votes=0)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

LABELS = ["a", "b", "c"]
units_strategy = st.dictionaries(
    st.integers(min_value=0, max_value=30),
    st.dictionaries(st.sampled_from(["r1", "r2", "r3", "r4"]), st.sampled_from(LABELS), max_size=4),
    max_size=25,
)


def relabel(units: dict[int, dict[str, str]], mapping: dict[str, str]) -> dict[int, dict[str, str]]:
    return {item: {rater: mapping[label] for rater, label in votes.items()} for item, votes in units.items()}


@settings(max_examples=200, deadline=None)
@given(units_strategy)
def test_coefficients_are_at_most_one(units: dict[int, dict[str, str]]) -> None:
    for value in (
        cohens_kappa(units, "r1", "r2"),
        krippendorff_alpha(units),
    ):
        assert value is None or (math.isfinite(value) and value <= 1 + 1e-12)
    kappa = cohens_kappa(units, "r1", "r2")
    assert kappa is None or kappa >= -1 - 1e-12


@settings(max_examples=200, deadline=None)
@given(units_strategy)
def test_percent_agreement_in_unit_interval(units: dict[int, dict[str, str]]) -> None:
    value = percent_agreement(units)
    assert value is None or 0 <= value <= 1
    has_pair = any(len(votes) >= 2 for votes in units.values())
    assert (value is None) is (not has_pair)


@settings(max_examples=200, deadline=None)
@given(units_strategy, st.permutations(["p", "q", "s"]))
def test_invariant_under_consistent_relabeling(
    units: dict[int, dict[str, str]], new_names: list[str]
) -> None:
    renamed = relabel(units, dict(zip(LABELS, new_names, strict=True)))
    assert cohens_kappa(renamed, "r1", "r3") == cohens_kappa(units, "r1", "r3")
    assert krippendorff_alpha(renamed) == krippendorff_alpha(units)
    assert percent_agreement(renamed) == percent_agreement(units)
    assert agreement_summary(renamed) == agreement_summary(units)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["r1", "r2", "r3", "r4", "r5"]), st.sampled_from(LABELS)))
def test_consensus_agreed_label_has_strict_majority(votes: dict[str, str]) -> None:
    result = consensus(votes)
    assert sum(result.counts.values()) == len(votes)
    if result.status is ConsensusStatus.AGREED:
        assert result.label is not None and 2 * result.counts[result.label] > len(votes)
    else:
        assert result.label is None
