"""Deterministic, stable train/eval split for labelled training examples.

Pure code; no Slack, database or network access.

How an item's split is decided:

1. Items (in arrival order) are grouped with :func:`runner.data.textnorm.near_duplicate_groups`, so exact
   and near duplicates always land in the same split (no train/eval leakage).
2. Each group's *anchor* is its earliest item. The split is drawn from
   ``sha256(json([salt, anchor.label, canonical(anchor.text)]))`` mapped to [0, 1): ``EVAL`` iff the
   value is below ``eval_fraction``. The label is part of the key, so every label gets its own
   independent draws (per-label stratification in expectation; see :func:`split_report`).

Consequences a caller must know:

* Deterministic across processes and machines (sha256, never Python's ``hash()``).
* Stable: appending items never changes an existing item's split, except when a new item is a near
  duplicate of two previously separate groups (a *bridge*): the groups merge and the later group
  adopts the earlier anchor's split.
* The key uses the anchor's label and canonical text: relabelling an anchor, or changing the salt
  or ``eval_fraction``, may move its group. Items with different labels but (near) identical text
  share the anchor's split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from runner.core.models import Split
from runner.data.textnorm import canonical, near_duplicate_groups

__all__ = ["Split", "SplitItem", "assign_splits", "content_hash", "split_report"]


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


def _unit_interval(salt: str, label: str, canonical_text: str) -> float:
    """Map ``(salt, label, canonical_text)`` to a uniform value in [0, 1) via sha256."""
    key = json.dumps([salt, label, canonical_text], ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    items: Sequence[SplitItem],
    eval_fraction: float = 0.2,
    salt: str = "ftbot-split-v1",
) -> dict[int, Split]:
    """Assign every item to ``TRAIN`` or ``EVAL``.

    Args:
        items: Items in arrival order (oldest first); ids must be unique.
        eval_fraction: Target fraction of groups per label that go to ``EVAL``, in (0, 1).
        salt: Hash salt; changing it reshuffles the whole split.

    Returns:
        Item id -> split.

    Raises:
        ValueError: ``eval_fraction`` is not strictly between 0 and 1, or ids repeat.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError("eval_fraction must be strictly between 0 and 1")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item ids must be unique")
    groups = near_duplicate_groups([item.text for item in items])
    group_split: dict[int, Split] = {}
    result: dict[int, Split] = {}
    for item, anchor_index in zip(items, groups, strict=True):
        split = group_split.get(anchor_index)
        if split is None:
            anchor = items[anchor_index]
            value = _unit_interval(salt, anchor.label, canonical(anchor.text))
            split = Split.EVAL if value < eval_fraction else Split.TRAIN
            group_split[anchor_index] = split
        result[item.id] = split
    return result


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
