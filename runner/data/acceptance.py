"""Acceptance of a version's suggestions and the test that says it dropped: pure functions.

A reviewed suggestion is accepted or corrected (`runner.registry.pilot` decides which from the
reviewers' reactions). The acceptance rate gets a Wilson score interval (well behaved at small n and
near 0 or 1, where the normal approximation is not). A drop is detected with a Bernoulli CUSUM
(Page's cumulative sum of log-likelihood ratios): after each review, ``S = max(0, S + llr)`` where
the ratio compares a degraded acceptance ``p1`` with the expected one ``p0`` (the version's offline
eval accuracy); an alarm is raised once ``S`` reaches the threshold, and only after a minimum number
of reviews, so that two unlucky first answers never page anyone. CUSUM is the optimal sequential
test for a shift from ``p0`` to ``p1`` (shortest detection delay for a given false-alarm rate), and
unlike re-running a fixed-sample test after every review it does not inflate false alarms by looking
again and again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95%
# The drop the test is tuned to detect: from the offline accuracy to this much lower.
DRIFT_DROP = 0.2
# S ≥ 3 means the reviews are e³ ≈ 20 times likelier under the degraded rate than the expected one.
CUSUM_THRESHOLD = 3.0
# Offline accuracy is clamped into this range: a perfect eval (1.0) would make one correction infinitely
# surprising, a hopeless one (0.0) would leave nothing to drop from.
P0_RANGE = (0.1, 0.98)
DEFAULT_BASELINE = 0.8  # a version without an offline evaluation is expected to do this well


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (``(0, 1)`` when there is nothing to go on).

    Raises:
        ValueError: ``successes`` is outside ``0..n``.
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # Exactly 0 and 1 at the ends (where rounding would leave a hair's breadth).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """An acceptance rate with its 95% Wilson interval."""

    accepted: int
    reviewed: int

    @property
    def rate(self) -> float:
        return self.accepted / self.reviewed if self.reviewed else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.accepted, self.reviewed)


def rate_of(outcomes: Sequence[bool]) -> Rate:
    return Rate(accepted=sum(1 for o in outcomes if o), reviewed=len(outcomes))


@dataclass(frozen=True)
class Cusum:
    """The test's verdict over a sequence of reviews."""

    p0: float
    p1: float
    threshold: float
    min_reviews: int
    statistic: float  # S after the last review
    peak: float  # the largest S once the minimum number of reviews was reached
    alarm_at: int | None  # the number of reviews at which S first reached the threshold (None: never)

    @property
    def alarm(self) -> bool:
        return self.alarm_at is not None


def baseline(offline_accuracy: float | None) -> tuple[float, float]:
    """``(p0, p1)``: the acceptance expected from the offline accuracy, and the degraded one tested."""
    low, high = P0_RANGE
    p0 = min(high, max(low, DEFAULT_BASELINE if offline_accuracy is None else offline_accuracy))
    return p0, max(0.01, p0 - DRIFT_DROP)


def cusum(
    outcomes: Sequence[bool],
    *,
    p0: float,
    p1: float,
    threshold: float = CUSUM_THRESHOLD,
    min_reviews: int = 10,
) -> Cusum:
    """Page's one-sided CUSUM for a drop in acceptance from `p0` to `p1` (see the module docstring).

    Args:
        outcomes: Accepted (True) or corrected (False), oldest first.
        p0: The acceptance expected.
        p1: The degraded acceptance to detect (below `p0`).
        threshold: S at which the alarm is raised.
        min_reviews: No alarm before this many reviews.

    Raises:
        ValueError: not ``0 < p1 < p0 < 1``, or a threshold that is not positive.
    """
    if not 0 < p1 < p0 < 1:
        raise ValueError(f"need 0 < p1 < p0 < 1, got p0={p0}, p1={p1}")
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    statistic, peak, alarm_at = 0.0, 0.0, None
    for n, statistic in enumerate(cusum_path(outcomes, p0=p0, p1=p1), start=1):
        if n >= min_reviews:
            peak = max(peak, statistic)
            if alarm_at is None and statistic >= threshold:
                alarm_at = n
    return Cusum(p0, p1, threshold, min_reviews, statistic, peak, alarm_at)


def cusum_path(outcomes: Sequence[bool], *, p0: float, p1: float) -> list[float]:
    """The CUSUM statistic S after each review (`cusum` reads its verdict off this path)."""
    accept, correct = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    path, statistic = [], 0.0
    for accepted in outcomes:
        statistic = max(0.0, statistic + (accept if accepted else correct))
        path.append(statistic)
    return path


@dataclass(frozen=True)
class Trajectory:
    """Acceptance after each review, as the drift alert's chart shows it."""

    rate: list[float]  # accepted so far / reviewed so far
    low: list[float]  # its 95% Wilson interval
    high: list[float]
    statistic: list[float]  # the CUSUM statistic S


def trajectory(outcomes: Sequence[bool], *, p0: float, p1: float) -> Trajectory:
    """The running acceptance rate with its Wilson interval, and the CUSUM path, review by review."""
    rate, low, high, accepted = [], [], [], 0
    for n, ok in enumerate(outcomes, start=1):
        accepted += bool(ok)
        interval = wilson(accepted, n)
        rate.append(accepted / n)
        low.append(interval[0])
        high.append(interval[1])
    return Trajectory(rate, low, high, cusum_path(outcomes, p0=p0, p1=p1))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on paired outcomes: `b` pairs only the candidate got right, `c`
    only the reference; the p-value that the two are equally good (1.0 with no discordant pair).

    Under the null each discordant pair is a fair coin, so this is a binomial test on ``b`` of
    ``b + c`` — exact at the small counts a pilot produces, where the chi-squared form is not.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


# A predicted label mix this far (total variation distance) from the training mix is a shift worth a look:
# with four balanced labels it means, e.g., one label predicted 55% of the time instead of 25%.
LABEL_SHIFT_TVD = 0.3


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()} if total else {}


def total_variation(observed: Mapping[str, int], expected: Mapping[str, int]) -> float:
    """Half the L1 distance between two label mixes given as counts (0: the same mix, 1: disjoint)."""
    p, q = shares(observed), shares(expected)
    return 0.5 * sum(abs(p.get(label, 0.0) - q.get(label, 0.0)) for label in set(p) | set(q))
