"""Inter-reviewer agreement coefficients and per-item consensus.

Pure functions over reviewer votes; no Slack, database or network access.

Votes are passed as *units*: a mapping ``item id -> {rater id -> label}``. A rater that did not
vote on an item is simply absent from that item's mapping (missing values are allowed everywhere).

All coefficients return ``None`` when there is nothing to compare (for example no item has two
votes). Intermediate arithmetic is done with exact fractions, so degenerate cases are detected
exactly and results do not depend on summation order.

Degenerate case convention: when the *expected* (chance) agreement is already perfect — every
vote in the compared data carries the same single label — the chance-corrected coefficients are
mathematically undefined (0 / 0). This module then returns ``1.0`` if the observed agreement is
perfect and ``0.0`` otherwise (with a single label in use observed agreement is always perfect,
so in practice ``1.0``). A dashboard therefore shows "everyone agrees" rather than nothing.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import TypeVar

ItemId = TypeVar("ItemId", bound=Hashable)
# Item id -> {rater id -> label}. Generic in the item id because Mapping is invariant in its key
# type, so ``dict[int, dict[str, str]]`` type-checks as well as ``Mapping[Hashable, ...]``.
Units = Mapping[ItemId, Mapping[str, str]]

__all__ = [
    "AgreementSummary",
    "Consensus",
    "ConsensusStatus",
    "agreement_summary",
    "cohens_kappa",
    "consensus",
    "krippendorff_alpha",
    "percent_agreement",
]


def _chance_corrected(observed: Fraction, expected: Fraction) -> float:
    """Return ``(observed - expected) / (1 - expected)`` with the degenerate-case convention.

    Args:
        observed: Observed agreement in [0, 1].
        expected: Chance agreement in [0, 1].

    Returns:
        The coefficient as a float; ``1.0``/``0.0`` when ``expected == 1`` (see module docstring).
    """
    if expected == 1:
        return 1.0 if observed == 1 else 0.0
    return float((observed - expected) / (1 - expected))


def percent_agreement(units: Units[ItemId]) -> float | None:
    """Mean, over items with at least two votes, of the fraction of agreeing rater pairs.

    For an item with ``n`` votes there are ``n * (n - 1) / 2`` rater pairs; the item's score is
    the fraction of those pairs that gave the same label. Items with fewer than two votes are
    ignored.

    Args:
        units: Item id -> {rater id -> label}.

    Returns:
        A value in [0, 1], or ``None`` when no item has two or more votes.
    """
    total = Fraction(0)
    items = 0
    for votes in units.values():
        n = len(votes)
        if n < 2:
            continue
        counts = Counter(votes.values())
        agreeing_pairs = sum(c * (c - 1) for c in counts.values())  # ordered pairs
        total += Fraction(agreeing_pairs, n * (n - 1))
        items += 1
    if items == 0:
        return None
    return float(total / items)


def cohens_kappa(units: Units[ItemId], rater_a: str, rater_b: str) -> float | None:
    """Cohen's kappa between two raters over the items both of them rated.

    ``kappa = (p_o - p_e) / (1 - p_e)`` where ``p_o`` is the fraction of shared items with equal
    labels and ``p_e = sum_k p_a(k) * p_b(k)`` uses each rater's own label distribution on the
    shared items.

    Degenerate case: if ``p_e == 1`` (both raters used one and the same label on every shared
    item) the coefficient is undefined; this returns ``1.0`` if ``p_o == 1`` else ``0.0``.

    Args:
        units: Item id -> {rater id -> label}.
        rater_a: First rater id.
        rater_b: Second rater id.

    Returns:
        Kappa in [-1, 1], or ``None`` when the raters share no item (or are the same rater).
    """
    if rater_a == rater_b:
        return None
    pairs = [
        (votes[rater_a], votes[rater_b]) for votes in units.values() if rater_a in votes and rater_b in votes
    ]
    n = len(pairs)
    if n == 0:
        return None
    agree = sum(1 for a, b in pairs if a == b)
    counts_a = Counter(a for a, _ in pairs)
    counts_b = Counter(b for _, b in pairs)
    expected_num = sum(c * counts_b.get(label, 0) for label, c in counts_a.items())
    return _chance_corrected(Fraction(agree, n), Fraction(expected_num, n * n))


def krippendorff_alpha(units: Units[ItemId]) -> float | None:
    """Krippendorff's alpha for nominal labels, computed from the coincidence matrix.

    Missing votes are allowed: each item contributes its ``m_u >= 2`` values, every ordered pair
    of values from different raters adding ``1 / (m_u - 1)`` to the coincidence ``o[c][k]``;
    items with fewer than two votes are dropped (they are not pairable). With ``n_c`` the
    marginals and ``n`` the number of pairable values::

        alpha = 1 - (n - 1) * sum_{c != k} o[c][k] / sum_{c != k} n_c * n_k

    Degenerate cases: ``None`` when no item has two votes; ``1.0`` when all pairable values carry
    one single label (expected disagreement is 0, so alpha is formally undefined; observed
    disagreement is then necessarily 0 too).

    Args:
        units: Item id -> {rater id -> label}.

    Returns:
        Alpha (at most 1), or ``None`` when nothing is pairable.
    """
    observed_disagreement = Fraction(0)  # sum over c != k of o[c][k]
    marginals: Counter[str] = Counter()
    for votes in units.values():
        m = len(votes)
        if m < 2:
            continue
        counts = Counter(votes.values())
        # Ordered pairs of values with different labels: m^2 - sum n_uc^2.
        observed_disagreement += Fraction(m * m - sum(c * c for c in counts.values()), m - 1)
        marginals.update(counts)
    n = sum(marginals.values())
    if n == 0:
        return None
    expected_disagreement = n * n - sum(c * c for c in marginals.values())  # sum_{c != k} n_c n_k
    if expected_disagreement == 0:
        return 1.0
    return float(1 - (n - 1) * observed_disagreement / expected_disagreement)


@dataclass(frozen=True)
class AgreementSummary:
    """Headline agreement figures for a set of reviewed items.

    Attributes:
        method: ``"cohen"`` when exactly two raters voted overall, else ``"krippendorff"``
            (also used for zero or one rater, where ``coefficient`` is ``None``).
        coefficient: The headline coefficient: Cohen's kappa or Krippendorff's alpha, as ``method`` says.
        percent: :func:`percent_agreement` over the same units.
        raters: Number of distinct raters that voted at least once.
        items_compared: Number of items with at least two votes.
        pairwise: Cohen's kappa for each unordered rater pair ``(a, b)`` with ``a < b``.
    """

    method: str
    coefficient: float | None
    percent: float | None
    raters: int
    items_compared: int
    pairwise: dict[tuple[str, str], float | None] = field(default_factory=dict)


def agreement_summary(units: Units[ItemId]) -> AgreementSummary:
    """Summarise agreement: headline coefficient, percent agreement and pairwise Cohen's kappa.

    Args:
        units: Item id -> {rater id -> label}.

    Returns:
        An :class:`AgreementSummary`. With exactly two raters the headline is Cohen's kappa over
        the items both rated; otherwise it is Krippendorff's alpha (which copes with missing votes).
    """
    raters = sorted({rater for votes in units.values() for rater in votes})
    items_compared = sum(1 for votes in units.values() if len(votes) >= 2)
    pairwise = {(a, b): cohens_kappa(units, a, b) for a, b in itertools.combinations(raters, 2)}
    if len(raters) == 2:
        method = "cohen"
        coefficient = pairwise[(raters[0], raters[1])]
    else:
        method = "krippendorff"
        coefficient = krippendorff_alpha(units)
    return AgreementSummary(
        method=method,
        coefficient=coefficient,
        percent=percent_agreement(units),
        raters=len(raters),
        items_compared=items_compared,
        pairwise=pairwise,
    )


class ConsensusStatus(StrEnum):
    """Consensus state of one item (a ``StrEnum``: members are ``str``; ``str(member)`` is the value)."""

    PENDING = "pending"
    AGREED = "agreed"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Consensus:
    """Consensus outcome for one item.

    Attributes:
        status: Pending, agreed or conflict.
        label: The agreed label; ``None`` unless ``status`` is ``AGREED``.
        counts: Votes per label, most voted first (ties by label).
    """

    status: ConsensusStatus
    label: str | None
    counts: dict[str, int]


def consensus(votes: Mapping[str, str], min_votes: int = 2) -> Consensus:
    """Decide an item's consensus from its votes.

    Rules: fewer than ``min_votes`` votes -> ``PENDING``; a label holding a strict majority of the
    votes cast (more than half; 2-1 counts) -> ``AGREED`` with that label; otherwise (tie or only a
    plurality) -> ``CONFLICT``.

    Args:
        votes: Rater id -> label.
        min_votes: Votes needed before a decision is made (at least 1).

    Returns:
        A :class:`Consensus`.

    Raises:
        ValueError: ``min_votes`` is below 1.
    """
    if min_votes < 1:
        raise ValueError("min_votes must be at least 1")
    tally = Counter(votes.values())
    counts = dict(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))
    n = len(votes)
    if n < min_votes:
        return Consensus(ConsensusStatus.PENDING, None, counts)
    top_label, top_count = next(iter(counts.items()))
    if 2 * top_count > n:
        return Consensus(ConsensusStatus.AGREED, top_label, counts)
    return Consensus(ConsensusStatus.CONFLICT, None, counts)
