"""How often each reviewer agrees with the labels the others settled on: a pure function.

For every vote a reviewer cast on an example, the reference is the owner's decision when an owner
settled the example, else the label a strict majority of the *other* reviewers' votes names (the
reviewer's own vote is left out, so agreeing with oneself counts for nothing); a vote with no
reference (no other vote, or the others tied) is not counted. Pilot reviews are votes on pilot
examples, so they count alongside the dataset's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runner.data import agreement
from runner.data.acceptance import wilson


@dataclass(frozen=True)
class Voted:
    """One example as reliability sees it: its votes, an owner's decision, and where it came from."""

    votes: Mapping[str, str]  # reviewer → value
    decided: str | None  # the owner's label (None: not settled by an owner)
    source: str  # "pilot", "thread", "import", …


@dataclass(frozen=True)
class Reliability:
    reviewer: str
    agreed: int
    compared: int
    pilot: int  # of `compared`, votes on pilot examples

    @property
    def rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.agreed, self.compared)


def reliability(examples: Iterable[Voted]) -> list[Reliability]:
    """Each reviewer's agreement with the reference labels (see the module docstring), the least
    reliable first (then by name)."""
    agreed: dict[str, int] = {}
    compared: dict[str, int] = {}
    pilot: dict[str, int] = {}
    for example in examples:
        for reviewer, value in example.votes.items():
            reference = example.decided
            if reference is None:
                others = {r: v for r, v in example.votes.items() if r != reviewer}
                if not others:
                    continue
                reference = agreement.consensus(others, min_votes=1).label
            if reference is None:
                continue
            compared[reviewer] = compared.get(reviewer, 0) + 1
            agreed[reviewer] = agreed.get(reviewer, 0) + (value == reference)
            pilot[reviewer] = pilot.get(reviewer, 0) + (example.source == "pilot")
    rows = [Reliability(r, agreed[r], compared[r], pilot[r]) for r in compared]
    return sorted(rows, key=lambda row: (row.rate, row.reviewer))
