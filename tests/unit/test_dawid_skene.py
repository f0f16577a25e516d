"""Dawid–Skene weighting: a hand-made case where majority vote gets an item wrong and the model does not."""

from __future__ import annotations

import pytest

from runner.data import agreement, dawid_skene

# A and B are always right. C answers "shipping" whenever "billing" is right (and is right on shipping
# tickets): their "shipping" says nothing. D is right two times in three, wrong both ways.
BILLING = [{"A": "billing", "B": "billing", "C": "shipping", "D": "billing"} for _ in range(6)]
BILLING[0]["D"] = BILLING[1]["D"] = "shipping"
SHIPPING = [{"A": "shipping", "B": "shipping", "C": "shipping", "D": "shipping"} for _ in range(6)]
SHIPPING[0]["D"] = SHIPPING[1]["D"] = "billing"
# The item at stake: billing (A is right); C and D, outvoting A, say shipping.
TARGET = {"A": "billing", "C": "shipping", "D": "shipping"}
UNITS = {**{f"b{i}": v for i, v in enumerate(BILLING)}, **{f"s{i}": v for i, v in enumerate(SHIPPING)}}
UNITS["target"] = TARGET


def test_majority_vote_gets_the_item_wrong_and_dawid_skene_gets_it_right():
    assert agreement.consensus(TARGET).label == "shipping"  # two against one
    model = dawid_skene.fit(UNITS, ["billing", "shipping"])
    assert model.label("target") == "billing"
    assert model.beliefs["target"]["billing"] > 0.8
    # every other item keeps the label everyone (but C) gave it
    assert all(model.label(f"b{i}") == "billing" and model.label(f"s{i}") == "shipping" for i in range(6))
    assert model.converged and model.iterations <= dawid_skene.DEFAULT_ITERATIONS


def test_the_reviewers_as_the_model_sees_them():
    model = dawid_skene.fit(UNITS, ["billing", "shipping"])
    accuracy = {r: model.accuracy(r) for r in "ABCD"}
    assert accuracy["A"] > 0.9 and accuracy["B"] > 0.9
    assert 0.6 < accuracy["D"] < 0.75  # right on 8 of 12 calibration items
    assert 0.4 < accuracy["C"] < 0.6  # right on shipping only
    # C's confusion: "shipping" whichever label is right
    assert model.confusion["C"]["billing"]["shipping"] > 0.85
    assert model.confusion["C"]["shipping"]["shipping"] > 0.85
    assert model.accuracy("nobody") is None


def test_equally_trusted_reviewers_who_disagree_stay_in_conflict():
    model = dawid_skene.fit({1: {"A": "x", "B": "y"}}, ["x", "y"])
    assert model.beliefs[1] == pytest.approx({"x": 0.5, "y": 0.5})
    assert model.label(1) is None


def test_an_owners_decision_is_known_and_teaches_the_model():
    # A and B disagree three times; the owner sided with B each time: B's next word carries the item.
    units = {i: {"A": "x", "B": "y"} for i in range(4)}
    model = dawid_skene.fit(units, ["x", "y"], known={0: "y", 1: "y", 2: "y"})
    assert model.beliefs[0] == {"x": 0.0, "y": 1.0}
    assert model.label(3) == "y"
    assert model.accuracy("B") > model.accuracy("A")  # type: ignore[operator]


def test_nothing_to_fit():
    model = dawid_skene.fit({}, ["x", "y"])
    assert model.beliefs == {} and model.label("any") is None and model.converged
    with pytest.raises(ValueError):
        dawid_skene.fit({}, max_iterations=0)
