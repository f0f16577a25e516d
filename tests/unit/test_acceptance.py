"""Acceptance rates and the drift test: Wilson intervals and a Bernoulli CUSUM, checked by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.data import acceptance


def test_wilson_interval_matches_published_values():
    low, high = acceptance.wilson(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    low, high = acceptance.wilson(0, 10)
    assert low == 0.0 and round(high, 3) == 0.278
    assert acceptance.wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        acceptance.wilson(11, 10)


@given(st.integers(min_value=1, max_value=500), st.data())
def test_wilson_interval_holds_the_rate(n, data):
    k = data.draw(st.integers(min_value=0, max_value=n))
    low, high = acceptance.wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_cusum_by_hand():
    p0, p1 = 0.9, 0.7
    accept, correct = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))  # -0.2513, +1.0986
    outcomes = [True] * 7 + [False] * 3
    test = acceptance.cusum(outcomes, p0=p0, p1=p1, threshold=3.0, min_reviews=10)
    assert test.alarm_at == 10 and test.statistic == pytest.approx(3 * correct)
    # the same reviews before the minimum sample: no alarm
    assert not acceptance.cusum(outcomes, p0=p0, p1=p1, min_reviews=12).alarm
    # accepts pull S back towards 0, never below
    mixed = [False, True, False, True, True, True, True, True, True, True]
    expected = 0.0
    for ok in mixed:
        expected = max(0.0, expected + (accept if ok else correct))
    assert acceptance.cusum(mixed, p0=p0, p1=p1).statistic == pytest.approx(expected)
    assert not acceptance.cusum(mixed, p0=p0, p1=p1).alarm


def test_a_version_at_its_offline_accuracy_does_not_alarm_but_a_worse_one_does():
    p0, p1 = acceptance.baseline(0.9)
    assert (p0, p1) == (0.9, pytest.approx(0.7))
    steady = ([True] * 9 + [False]) * 10  # 90% accepted, corrections spread out
    assert not acceptance.cusum(steady, p0=p0, p1=p1).alarm
    worse = [True, False] * 10  # 50% accepted
    assert acceptance.cusum(worse, p0=p0, p1=p1).alarm


def test_baseline_without_an_evaluation_and_at_the_extremes():
    assert acceptance.baseline(None)[0] == acceptance.DEFAULT_BASELINE
    assert acceptance.baseline(1.0)[0] == 0.98 and acceptance.baseline(0.0) == (0.1, 0.01)
    with pytest.raises(ValueError):
        acceptance.cusum([True], p0=0.5, p1=0.6)


def test_exact_mcnemar_by_hand():
    assert acceptance.mcnemar_exact(0, 0) == 1.0
    assert acceptance.mcnemar_exact(2, 0) == 0.5  # 2 × (1/2)²
    assert acceptance.mcnemar_exact(8, 1) == pytest.approx(2 * (1 + 9) / 2**9)
    assert acceptance.mcnemar_exact(3, 3) == 1.0


def test_the_trajectory_the_alert_chart_shows_by_hand():
    from runner.data.acceptance import cusum, cusum_path, trajectory, wilson

    outcomes = [True, False, False, True]
    path = trajectory(outcomes, p0=0.8, p1=0.6)
    assert path.rate == [1.0, 0.5, 1 / 3, 0.5]
    assert (path.low[1], path.high[1]) == wilson(1, 2)
    # S = max(0, S + llr): log(0.6/0.8) when accepted, log(0.4/0.2) when corrected
    up, down = math.log(2), math.log(0.75)
    assert path.statistic == pytest.approx([0.0, up, 2 * up, 2 * up + down])
    assert cusum_path(outcomes, p0=0.8, p1=0.6) == path.statistic
    assert cusum(outcomes, p0=0.8, p1=0.6, min_reviews=1).statistic == path.statistic[-1]
    assert trajectory([], p0=0.8, p1=0.6).rate == []
