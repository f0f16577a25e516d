"""Deterministic, stable train/eval split for labelled training examples.

Pure code; no Slack, database or network access.

How an item's split is decided (:func:`stable_splits`):

1. An item that has been in a snapshot keeps the side it had there (its *pin*), whatever is added,
   labelled, edited or deleted around it. A model trained on that snapshot saw its train side; moving
   an example to eval later would evaluate the model on something it was trained on.
2. Items are grouped with :func:`runner.data.textnorm.near_duplicate_groups` together with every
   text an earlier snapshot held (*held* texts, deleted examples and old versions of edited ones
   included), so exact and near duplicates (reorderings included) land on one side.
3. A group with no pinned member draws its side from
   ``sha256(json([salt, anchor.label, canonical(anchor.text)]))`` mapped to [0, 1) (``EVAL`` iff
   the value is below ``eval_fraction``), its anchor being its earliest item. The label is part of
   the key, so every label gets its own draws (per-label stratification in expectation).
   A group whose pinned members are all on one side takes that side.
4. What cannot be placed without a group straddling the split is left out of the snapshot, with the
   reason: an unpinned item linked to texts held on both sides (a *bridge*), and an item pinned to
   eval that is a near duplicate of a text held in train (only an edit, or a change to the
   duplicate rule, can bring that about).

So: once pinned, an item is on its side or left out, never on the other side; within one result no
near-duplicate group straddles; and no eval item is a near duplicate of any text an earlier snapshot
trained on. Deterministic across processes and machines (sha256, never Python's ``hash()``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from runner.core.models import Split
from runner.data.textnorm import canonical, near_duplicate_groups

__all__ = [
    "HeldText",
    "Split",
    "SplitItem",
    "StableSplit",
    "assign_splits",
    "content_hash",
    "split_report",
    "stable_splits",
]

BRIDGE = "a near duplicate of examples on both sides of earlier snapshots"
EVAL_TWIN_OF_TRAIN = "held out before, now a near duplicate of a training example"


@dataclass(frozen=True)
class SplitItem:
    """One labelled example.

    Attributes:
        id: Stable item id (unique within a dataset).
        text: Example text.
        label: Label; may be ``""`` for generation tasks.
    """

    id: int
    text: str
    label: str


@dataclass(frozen=True)
class HeldText:
    """A text an earlier snapshot held, and on which side.

    Attributes:
        id: The id of the item it belonged to (it may be gone since).
        text: The text as that snapshot held it.
        split: Its side there.
    """

    id: int
    text: str
    split: Split


@dataclass
class StableSplit:
    """What :func:`stable_splits` decided.

    Attributes:
        splits: Item id -> side, for every item that can go into a snapshot.
        excluded: Item id -> why it is left out (see the module docstring).
    """

    splits: dict[int, Split] = field(default_factory=dict)
    excluded: dict[int, str] = field(default_factory=dict)


def _unit_interval(salt: str, label: str, canonical_text: str) -> float:
    """Map ``(salt, label, canonical_text)`` to a uniform value in [0, 1) via sha256."""
    key = json.dumps([salt, label, canonical_text], ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check(items: Sequence[SplitItem], eval_fraction: float) -> None:
    if not 0 < eval_fraction < 1:
        raise ValueError("eval_fraction must be strictly between 0 and 1")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")


def stable_splits(
    items: Sequence[SplitItem],
    pinned: Mapping[int, Split] | None = None,
    held: Sequence[HeldText] = (),
    eval_fraction: float = 0.2,
    salt: str = "ftbot-split-v1",
) -> StableSplit:
    """Assign every item to ``TRAIN`` or ``EVAL``, or leave it out (see the module docstring).

    Args:
        items: Items in arrival order (oldest first); ids must be unique.
        pinned: Item id -> the side it took in the first snapshot that held it.
        held: Every text earlier snapshots held, with its side there.
        eval_fraction: Target fraction of groups per label that go to ``EVAL``, in (0, 1).
        salt: Hash salt; changing it reshuffles every unpinned group.

    Returns:
        The sides, and the items left out with the reason.

    Raises:
        ValueError: ``eval_fraction`` is not strictly between 0 and 1, or ids repeat.
    """
    _check(items, eval_fraction)
    pinned = {k: Split(v) for k, v in (pinned or {}).items()}
    # Nodes: the items, then the held texts. A node's side is known for pinned items and held texts.
    sides: list[Split | None] = [pinned.get(item.id) for item in items] + [h.split for h in held]
    texts = [item.text for item in items] + [h.text for h in held]
    groups = near_duplicate_groups(texts)
    known = [n for n, side in enumerate(sides) if side is not None]
    pinned_groups = dict(zip(known, near_duplicate_groups([texts[n] for n in known]), strict=True))

    sides_in: dict[int, set[Split]] = {}
    for node, side in enumerate(sides):
        if side is not None:
            sides_in.setdefault(groups[node], set()).add(side)
    train_in_pinned_group = {pinned_groups[n] for n in known if sides[n] is Split.TRAIN}

    result = StableSplit()
    drawn: dict[int, Split] = {}
    for node, item in enumerate(items):
        own = sides[node]
        if own is not None:
            if own is Split.EVAL and pinned_groups[node] in train_in_pinned_group:
                result.excluded[item.id] = EVAL_TWIN_OF_TRAIN
            else:
                result.splits[item.id] = own
            continue
        around = sides_in.get(groups[node], set())
        if len(around) > 1:
            result.excluded[item.id] = BRIDGE
        elif around:
            result.splits[item.id] = next(iter(around))
        else:
            split = drawn.get(groups[node])
            if split is None:  # this item is the group's earliest: its anchor
                value = _unit_interval(salt, item.label, canonical(item.text))
                split = drawn[groups[node]] = Split.EVAL if value < eval_fraction else Split.TRAIN
            result.splits[item.id] = split
    return result


def assign_splits(
    items: Sequence[SplitItem],
    eval_fraction: float = 0.2,
    salt: str = "ftbot-split-v1",
) -> dict[int, Split]:
    """Assign every item to ``TRAIN`` or ``EVAL`` when no snapshot has pinned anything yet.

    Each near-duplicate group takes the side drawn for its earliest item (see the module docstring);
    appending items never changes an existing item's split, except when a new item links two
    previously separate groups (a bridge). Snapshots use :func:`stable_splits`, which never moves a
    pinned item.

    Args:
        items: Items in arrival order (oldest first); ids must be unique.
        eval_fraction: Target fraction of groups per label that go to ``EVAL``, in (0, 1).
        salt: Hash salt; changing it reshuffles the whole split.

    Returns:
        Item id -> split.

    Raises:
        ValueError: ``eval_fraction`` is not strictly between 0 and 1, or ids repeat.
    """
    return stable_splits(items, eval_fraction=eval_fraction, salt=salt).splits


def split_report(items: Iterable[SplitItem], splits: Mapping[int, Split]) -> dict[str, dict[str, int]]:
    """Count items per label per split.

    Args:
        items: The items.
        splits: Item id -> split, as returned by :func:`assign_splits`.

    Returns:
        ``{label: {"train": n, "eval": m}}`` with labels sorted and both keys always present.

    Raises:
        ValueError: An item has no split.
    """
    report: dict[str, dict[str, int]] = {}
    for item in items:
        if item.id not in splits:
            raise ValueError(f"item {item.id} has no split")
        counts = report.setdefault(item.label, {Split.TRAIN: 0, Split.EVAL: 0})
        counts[Split(splits[item.id]).value] += 1
    return dict(sorted(report.items()))


def content_hash(items_with_splits: Iterable[tuple[SplitItem, Split | str]]) -> str:
    """Content address of a dataset snapshot.

    The sha256 hex digest of the UTF-8 JSON array ``[[id, text, label, split], ...]`` sorted by id,
    serialised with ``ensure_ascii=False`` and separators ``(",", ":")``. Texts are hashed as given
    (not normalised). Order of the input does not matter.

    Args:
        items_with_splits: ``(item, split)`` pairs, e.g. ``((it, splits[it.id]) for it in items)``.

    Returns:
        64 lowercase hex characters.

    Raises:
        ValueError: An id repeats or a split value is not ``"train"``/``"eval"``.
    """
    rows = sorted(
        ([item.id, item.text, item.label, Split(split).value] for item, split in items_with_splits),
        key=lambda row: row[0],
    )
    if len({row[0] for row in rows}) != len(rows):
        raise ValueError("item ids must be unique")
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
