"""Reviewer reliability: agreement with the label the others (or the owner) settled on."""

from __future__ import annotations

from runner.data.reliability import Voted, reliability

EXAMPLES = [
    Voted({"A": "billing", "B": "billing", "C": "technical"}, None, "thread"),  # A, B: the others tie
    Voted({"A": "billing", "B": "billing"}, None, "thread"),
    Voted({"A": "technical", "B": "billing"}, "billing", "thread"),  # the owner settled it
    Voted({"A": "account", "C": "account"}, None, "pilot"),
    Voted({"B": "shipping"}, None, "pilot"),  # nobody else voted: nothing to compare with
]


def test_each_reviewer_against_the_others_by_hand():
    rows = {r.reviewer: r for r in reliability(EXAMPLES)}
    assert {r: (x.agreed, x.compared, x.pilot) for r, x in rows.items()} == {
        "A": (2, 3, 1),
        "B": (2, 2, 0),
        "C": (1, 2, 1),
    }
    assert [r.reviewer for r in reliability(EXAMPLES)] == ["C", "A", "B"]  # least reliable first
    assert rows["C"].interval[0] < 0.5 < rows["C"].interval[1]
