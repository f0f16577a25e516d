"""Blind A/B statistics: win rates with a bootstrap interval, and Bradley–Terry scores. Pure functions.

A reviewer's vote on an item compares the two versions shown there: a win counts 1 for the version
chosen, a tie (🟰) counts half to each. A version's win rate is its points over the votes on items
that showed it. Votes on one item are not independent (the same input, often the same easy or hard
case), so the interval resamples *items*, with their votes, not single votes: a percentile bootstrap
of the ratio of summed points to summed votes (a cluster bootstrap), with a fixed seed so a result
can be computed again exactly.

With more than two versions each is also given a Bradley–Terry score: the strengths ``p`` under which
version i beats j with probability ``p_i / (p_i + p_j)``, fitted by maximum likelihood with the
minorize-maximize iteration (Hunter 2004, "MM algorithms for generalized Bradley–Terry models"):
``p_i ← W_i / Σ_j n_ij / (p_i + p_j)``, with W_i the points of i (ties half) and n_ij the votes
between i and j, normalized to sum to 1 after each step. A version that never won tends to 0.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

RESAMPLES = 2000  # bootstrap resamples: the 2.5th and 97.5th percentiles settle to about ±0.01
LEVEL = 0.95
TIE = 0.5  # what a tie counts to each side


@dataclass(frozen=True)
class Judgement:
    """One live vote on an item: `first` against `second`, and the first's score (1, 0.5 or 0)."""

    item: Hashable
    first: Hashable
    second: Hashable
    score: float


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The smallest value whose empirical CDF reaches `q` (the inverse CDF, no interpolation)."""
    index = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def bootstrap_ratio(
    clusters: Sequence[tuple[float, float]],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``Σ points / Σ votes`` over clusters ``(points, votes)``,
    resampling clusters with replacement (resamples with no votes at all are left out).

    Returns:
        ``(low, high)``, or None with no votes to go on.
    """
    if not clusters or sum(votes for _, votes in clusters) == 0:
        return None
    draw = random.Random(seed)
    m = len(clusters)
    ratios = []
    for _ in range(resamples):
        points = votes = 0.0
        for _ in range(m):
            p, v = clusters[draw.randrange(m)]
            points += p
            votes += v
        if votes:
            ratios.append(points / votes)
    ratios.sort()
    alpha = (1 - level) / 2
    return _quantile(ratios, alpha), _quantile(ratios, 1 - alpha)


@dataclass(frozen=True)
class Standing:
    """A version's record over a set of judgements."""

    key: Hashable
    points: float
    votes: int
    interval: tuple[float, float] | None

    @property
    def win_rate(self) -> float | None:
        return self.points / self.votes if self.votes else None


def _clusters(judgements: Iterable[Judgement], key: Hashable) -> list[tuple[float, float]]:
    """Per item: (points of `key`, votes on it), for the items that showed `key`."""
    per_item: dict[Hashable, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for j in judgements:
        if key == j.first:
            per_item[j.item][0] += j.score
        elif key == j.second:
            per_item[j.item][0] += 1 - j.score
        else:
            continue
        per_item[j.item][1] += 1
    return [(p, v) for p, v in per_item.values()]


def standing(judgements: Sequence[Judgement], key: Hashable, *, seed: int = 0) -> Standing:
    """`key`'s points, votes and the bootstrap interval of its win rate."""
    clusters = _clusters(judgements, key)
    return Standing(
        key,
        sum(p for p, _ in clusters),
        int(sum(v for _, v in clusters)),
        bootstrap_ratio(clusters, seed=seed),
    )


def head_to_head(judgements: Sequence[Judgement], first: Hashable, second: Hashable) -> list[Judgement]:
    """The judgements between `first` and `second`, each oriented so that ``first`` is `first`."""
    found = []
    for j in judgements:
        if (j.first, j.second) == (first, second):
            found.append(j)
        elif (j.first, j.second) == (second, first):
            found.append(Judgement(j.item, first, second, 1 - j.score))
    return found


def bradley_terry(
    judgements: Sequence[Judgement], *, iterations: int = 10_000, tolerance: float = 1e-10
) -> dict[Hashable, float]:
    """Bradley–Terry strengths by Hunter's MM iteration (see the module docstring), summing to 1.

    Versions without a vote are left out. Ties count half a win to each side.
    """
    wins: dict[Hashable, float] = defaultdict(float)
    between: dict[Hashable, dict[Hashable, float]] = defaultdict(lambda: defaultdict(float))
    for j in judgements:
        wins[j.first] += j.score
        wins[j.second] += 1 - j.score
        between[j.first][j.second] += 1
        between[j.second][j.first] += 1
    keys = list(between)
    if not keys:
        return {}
    strength = {k: 1 / len(keys) for k in keys}
    for _ in range(iterations):
        updated = {}
        for i in keys:
            denominator = sum(n / (strength[i] + strength[j]) for j, n in between[i].items())
            updated[i] = wins[i] / denominator if denominator else 0.0
        total = sum(updated.values()) or 1.0
        updated = {k: v / total for k, v in updated.items()}
        change = max(abs(updated[k] - strength[k]) for k in keys)
        strength = updated
        if change < tolerance:
            break
    return strength


def score_of(choice: str) -> float:
    """What a vote (``a``, ``b`` or ``tie``) scores for the version shown as A."""
    return {"a": 1.0, "b": 0.0, "tie": TIE}[choice]
