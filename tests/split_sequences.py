"""Random histories of a dataset for the split's property tests: examples added, labelled, unlabelled,
edited and deleted, with snapshots taken in between, and the checks every snapshot must pass.

Texts are built from a few clauses, alone or two at a time in either order, sometimes with a typo:
the histories are full of exact duplicates, reorderings and near duplicates, so twins are labelled
in every order and deleted under each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from runner.data.split import Split
from runner.data.textnorm import near_duplicate_groups

CLAUSES = [
    "my card was charged twice",
    "the invoice total is wrong",
    "the app crashes when I open settings",
    "login fails with an unknown error",
    "the parcel has not arrived yet",
    "please reset the password for my account",
]
LABELS = ["billing", "technical"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from(CLAUSES))
    if draw(st.booleans()):
        second = draw(st.sampled_from([c for c in CLAUSES if c != first]))
        first = f"{first} and {second}" if draw(st.booleans()) else f"{second} and {first}"
    if draw(st.integers(min_value=0, max_value=3)) == 0:  # a typo now and then
        k = draw(st.integers(min_value=0, max_value=len(first) - 1))
        first = first[:k] + "x" + first[k + 1 :]
    return first


# One step of a history: ("add", text) | ("label", n, label) | ("unlabel", n) | ("edit", n, text)
# | ("delete", n) | ("snapshot",). `n` picks an example among those added so far (modulo their count).
Step = tuple


def steps() -> st.SearchStrategy[Step]:
    index = st.integers(min_value=0, max_value=10_000)
    add = st.tuples(st.just("add"), texts())
    label = st.tuples(st.just("label"), index, st.sampled_from(LABELS))
    return st.one_of(  # adding and labelling are the common steps
        add,
        add,
        label,
        label,
        label,
        st.tuples(st.just("unlabel"), index),
        st.tuples(st.just("edit"), index, texts()),
        st.tuples(st.just("delete"), index),
        st.tuples(st.just("snapshot")),
    )


def histories(max_steps: int = 40) -> st.SearchStrategy[list[Step]]:
    """A history: a few examples posted and labelled, then random steps, then a snapshot (so every
    history checks something)."""
    start = st.lists(st.tuples(st.just("add"), texts()), min_size=2, max_size=8)
    labelled = st.lists(
        st.tuples(st.just("label"), st.integers(0, 10_000), st.sampled_from(LABELS)), max_size=8
    )
    rest = st.lists(steps(), min_size=1, max_size=max_steps)
    return st.tuples(start, labelled, rest).map(
        lambda parts: [*parts[0], *parts[1], *parts[2], ("snapshot",)]
    )


@dataclass
class SnapshotLog:
    """Every snapshot taken so far: example id -> (text, side), oldest first."""

    snapshots: list[dict[int, tuple[str, Split]]] = field(default_factory=list)

    def check_and_add(self, rows: dict[int, tuple[str, Split]]) -> None:
        """The properties a new snapshot must have, given the earlier ones; then remember it."""
        # 1. Once an example has been in a snapshot, its side never changes.
        for earlier in self.snapshots:
            for example_id, (_text, side) in rows.items():
                if example_id in earlier:
                    assert earlier[example_id][1] is side, f"example {example_id} moved to {side}"
        # 2. Near-duplicate groups never straddle the split.
        ids = sorted(rows)
        groups = near_duplicate_groups([rows[i][0] for i in ids])
        by_group: dict[int, set[Split]] = {}
        for example_id, group in zip(ids, groups, strict=True):
            by_group.setdefault(group, set()).add(rows[example_id][1])
        assert all(len(sides) == 1 for sides in by_group.values()), "a near-duplicate group straddles"
        # 3. Nothing held out is a near duplicate of anything an earlier snapshot trained on.
        trained = {
            text for earlier in self.snapshots for text, side in earlier.values() if side is Split.TRAIN
        }
        for text, side in rows.values():
            if side is Split.EVAL:
                for seen in trained:
                    assert near_duplicate_groups([text, seen]) != [0, 0], (
                        f"{text!r} was trained on as {seen!r}"
                    )
        self.snapshots.append(rows)
