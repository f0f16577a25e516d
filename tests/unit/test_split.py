"""Tests for runner.data.split: deterministic, stable, duplicate-safe and stratified train/eval splits."""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.data.split import Split, SplitItem, assign_splits, content_hash, split_report
from runner.data.textnorm import canonical, near_duplicate_groups

REPO_ROOT = Path(__file__).resolve().parents[2]


def synthetic_items(n: int, labels: list[str], seed: int = 7) -> list[SplitItem]:
    """``n`` distinct, non-near-duplicate items spread over ``labels``."""
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8))) for _ in range(5000)
    ]
    return [
        SplitItem(
            id=i + 1,
            text=" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 30))),
            label=labels[i % len(labels)],
        )
        for i in range(n)
    ]


def expected_split(salt: str, label: str, text: str, eval_fraction: float) -> Split:
    """The documented formula, recomputed independently of the module."""
    key = json.dumps([salt, label, canonical(text)], ensure_ascii=False, separators=(",", ":"))
    value = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    return Split.EVAL if value < eval_fraction else Split.TRAIN


def test_split_matches_documented_hash() -> None:
    items = synthetic_items(50, ["good", "bad", ""])
    splits = assign_splits(items, eval_fraction=0.3, salt="s1")
    for item in items:
        assert splits[item.id] is expected_split("s1", item.label, item.text, 0.3)
    assert {splits[item.id] for item in items} == {Split.TRAIN, Split.EVAL}


def test_deterministic_in_process() -> None:
    items = synthetic_items(300, ["a", "b"])
    assert assign_splits(items) == assign_splits(list(items))
    assert assign_splits(items, salt="other") != assign_splits(items)  # the salt matters


def test_deterministic_across_processes() -> None:
    items = synthetic_items(200, ["a", "b", "c"])
    here = {str(k): v.value for k, v in assign_splits(items).items()}
    script = (
        "import json, random, string, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from runner.data.split import SplitItem, assign_splits\n"
        "items = [SplitItem(**row) for row in json.loads(sys.stdin.read())]\n"
        "print(json.dumps({str(k): v.value for k, v in assign_splits(items).items()}))\n"
    )
    payload = json.dumps([{"id": it.id, "text": it.text, "label": it.label} for it in items])
    for seed in ("0", "123", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, str(REPO_ROOT)],
            input=payload,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        assert json.loads(out.stdout) == here


def test_eval_fraction_per_label_close_to_target() -> None:
    labels = ["positive", "negative", "neutral", ""]
    items = synthetic_items(2000, labels)
    assert len(set(near_duplicate_groups([it.text for it in items]))) == 2000  # all distinct
    for target in (0.1, 0.2, 0.5):
        report = split_report(items, assign_splits(items, eval_fraction=target))
        assert set(report) == set(labels)
        for counts in report.values():
            fraction = counts["eval"] / (counts["eval"] + counts["train"])
            assert abs(fraction - target) <= 0.05, (target, counts)


def test_duplicates_never_straddle() -> None:
    base = synthetic_items(400, ["a", "b"])
    items = list(base)
    rng = random.Random(3)
    next_id = 10_000
    for item in rng.sample(base, 150):
        text = item.text
        variant = rng.choice(
            [
                text.upper(),
                text + "!!",
                f"*{text}*",
                text.replace(" ", "  "),
                text[:-1] + ("x" if text[-1] != "x" else "y") if len(text) > 80 else text,
            ]
        )
        items.append(SplitItem(id=next_id, text=variant, label=rng.choice(["a", "b"])))
        next_id += 1
    splits = assign_splits(items)
    groups = near_duplicate_groups([it.text for it in items])
    by_group: dict[int, set[Split]] = {}
    for item, group in zip(items, groups, strict=True):
        by_group.setdefault(group, set()).add(splits[item.id])
    assert all(len(s) == 1 for s in by_group.values())
    assert len(by_group) < len(items)  # duplicates were actually grouped
    # Every duplicate follows its anchor, whatever its own label.
    for item, group in zip(items, groups, strict=True):
        anchor = items[group]
        assert splits[item.id] is expected_split("ftbot-split-v1", anchor.label, anchor.text, 0.2)


def test_new_duplicate_follows_existing_group() -> None:
    old = synthetic_items(100, ["a", "b"])
    before = assign_splits(old)
    target = old[17]
    newcomers = [
        SplitItem(id=1000, text=target.text.upper() + "?", label="b" if target.label == "a" else "a"),
        SplitItem(id=1001, text="completely unrelated new text about invoices and refunds", label="a"),
    ]
    after = assign_splits([*old, *newcomers])
    assert {k: after[k] for k in before} == before
    assert after[1000] is before[target.id]


def test_bridge_case_moves_later_group_to_earlier_anchor() -> None:
    base = "please move the weekly planning meeting to thursday afternoon because the office is closed"
    one_typo = base.replace("weekly", "weekyl")
    two_typos = one_typo.replace("closed", "clsoed")
    # Pick labels so that the two old groups land in different splits before the bridge.
    old: list[SplitItem] = []
    for label in ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"]:
        old = [SplitItem(1, base, "x"), SplitItem(2, two_typos, label)]
        before = assign_splits(old, eval_fraction=0.5)
        if before[1] is not before[2]:
            break
    else:
        pytest.fail("no label separated the two groups")
    after = assign_splits([*old, SplitItem(3, one_typo, "x")], eval_fraction=0.5)
    assert after[1] is before[1]  # the earliest anchor keeps its split
    assert after[2] is before[1] and after[3] is before[1]  # the bridged group follows it


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_eval_fraction_validation(fraction: float) -> None:
    with pytest.raises(ValueError):
        assign_splits(synthetic_items(3, ["a"]), eval_fraction=fraction)


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(ValueError):
        assign_splits([SplitItem(1, "x", "a"), SplitItem(1, "y", "a")])


def test_empty_input() -> None:
    assert assign_splits([]) == {}
    assert split_report([], {}) == {}


def test_split_report_counts() -> None:
    items = [
        SplitItem(1, "a", "pos"),
        SplitItem(2, "b", "pos"),
        SplitItem(3, "c", "neg"),
        SplitItem(4, "d", ""),
    ]
    splits = {1: Split.TRAIN, 2: Split.EVAL, 3: Split.TRAIN, 4: Split.EVAL}
    assert split_report(items, splits) == {
        "": {"train": 0, "eval": 1},
        "neg": {"train": 1, "eval": 0},
        "pos": {"train": 1, "eval": 1},
    }
    with pytest.raises(ValueError):
        split_report(items, {1: Split.TRAIN})


def test_content_hash() -> None:
    a = SplitItem(2, "héllo", "pos")
    b = SplitItem(1, "world", "")
    digest = content_hash([(a, Split.EVAL), (b, Split.TRAIN)])
    # Documented encoding: JSON rows [id, text, label, split] sorted by id, compact, UTF-8.
    manual = hashlib.sha256('[[1,"world","","train"],[2,"héllo","pos","eval"]]'.encode()).hexdigest()
    assert digest == manual
    assert content_hash([(b, "train"), (a, "eval")]) == digest  # order and str splits
    assert content_hash([(a, Split.TRAIN), (b, Split.TRAIN)]) != digest
    assert content_hash([(SplitItem(2, "hello", "pos"), Split.EVAL), (b, Split.TRAIN)]) != digest
    assert content_hash([(SplitItem(2, "héllo", "neg"), Split.EVAL), (b, Split.TRAIN)]) != digest
    assert content_hash([]) == hashlib.sha256(b"[]").hexdigest()
    with pytest.raises(ValueError):
        content_hash([(a, Split.EVAL), (a, Split.TRAIN)])
    with pytest.raises(ValueError):
        content_hash([(a, "test")])


# ------------------------------------------------------------------------------------------------
# stability property
# ------------------------------------------------------------------------------------------------

VOCAB = ["refund", "invoice", "password", "reset", "account", "billing", "export", "error", "please", "help"]


@st.composite
def item_rows(draw: st.DrawFn, max_size: int) -> list[tuple[str, str]]:
    """(text, label) rows with frequent exact and near duplicates of earlier rows.

    A row may copy an earlier row with one or two words reversed (at positions 0 and/or 2). With
    22-word texts "A" and "A with both edits" are not linked (char Jaccard ~0.79) while "A with one
    edit" is linked to both (~0.93 / ~0.86), so appending it bridges two old groups.
    """
    out: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=max_size))):
        label = draw(st.sampled_from(["a", "b", ""]))
        copy = draw(st.booleans())
        if out and copy:
            words = draw(st.sampled_from(out))[0].split()
            for pos in draw(st.lists(st.sampled_from([0, 2]), min_size=1, max_size=2, unique=True)):
                if pos < len(words):
                    words[pos] = words[pos][::-1]
            out.append((" ".join(words), label))
        else:
            n = draw(st.sampled_from([3, 22, 22, 35]))
            out.append((" ".join(draw(st.lists(st.sampled_from(VOCAB), min_size=n, max_size=n))), label))
    return out


@settings(max_examples=200, deadline=None)
@given(item_rows(max_size=16), st.integers(min_value=0, max_value=16), st.sampled_from([0.2, 0.5]))
def test_appending_items_keeps_old_splits(rows: list[tuple[str, str]], cut: int, fraction: float) -> None:
    items = [SplitItem(id=i, text=text, label=label) for i, (text, label) in enumerate(rows)]
    old_items = items[: min(cut, len(items))]
    before = assign_splits(old_items, eval_fraction=fraction)
    after = assign_splits(items, eval_fraction=fraction)
    groups_before = near_duplicate_groups([it.text for it in old_items])
    groups_after = near_duplicate_groups([it.text for it in items])
    for i, item in enumerate(old_items):
        bridged = any(
            groups_before[j] != groups_before[i] and groups_after[j] == groups_after[i]
            for j in range(len(old_items))
        )
        if bridged:
            # Documented exception: the merged group follows its earliest anchor.
            anchor = items[groups_after[i]]
            assert after[item.id] is expected_split("ftbot-split-v1", anchor.label, anchor.text, fraction)
        else:
            assert after[item.id] is before[item.id]
    # Duplicates never straddle, old or new.
    for i, item in enumerate(items):
        assert after[item.id] is after[items[groups_after[i]].id]


# --- stability across snapshots (runner.data.split.stable_splits) -----------------------------

from runner.data.split import BRIDGE, EVAL_TWIN_OF_TRAIN, HeldText, stable_splits  # noqa: E402
from tests.split_sequences import LABELS, SnapshotLog, Step, histories  # noqa: E402


def drawn(text: str, label: str = "billing", eval_fraction: float = 0.5) -> Split:
    return expected_split("ftbot-split-v1", label, text, eval_fraction)


def twins_drawn_apart(eval_fraction: float = 0.5) -> tuple[str, str]:
    """Two reorderings of one ticket whose own draws would put them on different sides."""
    for i in range(200):
        first = f"my card was charged twice for order {'x' * i} and the invoice is wrong"
        second = f"the invoice is wrong and my card was charged twice for order {'x' * i}"
        if drawn(first, eval_fraction=eval_fraction) != drawn(second, eval_fraction=eval_fraction):
            return first, second
    raise AssertionError("no such pair")


def test_a_twin_labelled_later_joins_the_side_its_twin_was_snapshotted_on() -> None:
    earlier, later = twins_drawn_apart()
    # Snapshot 1: only the later post is labelled; it anchors its group alone and is pinned.
    first = stable_splits([SplitItem(2, later, "billing")], eval_fraction=0.5)
    assert first.splits == {2: drawn(later)}
    # The earlier post is labelled now; it would anchor the group (it is the earliest) and draw the
    # other side, but its twin is pinned: both stay where the twin was.
    second = stable_splits(
        [SplitItem(1, earlier, "billing"), SplitItem(2, later, "billing")],
        pinned=first.splits,
        held=[HeldText(2, later, first.splits[2])],
        eval_fraction=0.5,
    )
    assert second.splits == {1: first.splits[2], 2: first.splits[2]} and not second.excluded


@pytest.mark.parametrize("what", ["deleted", "unlabelled"])
def test_the_anchor_leaving_does_not_move_its_twin(what: str) -> None:
    anchor, twin = twins_drawn_apart()
    items = [SplitItem(1, anchor, "billing"), SplitItem(2, twin, "billing")]
    first = stable_splits(items, eval_fraction=0.5)
    assert first.splits[1] is first.splits[2] is drawn(anchor)
    held = [HeldText(i.id, i.text, first.splits[i.id]) for i in items]
    # The anchor is deleted, or loses consensus: either way it is no longer an item.
    second = stable_splits([items[1]], pinned=first.splits, held=held, eval_fraction=0.5)
    assert second.splits == {2: drawn(anchor)}, what


def test_an_unpinned_near_duplicate_of_a_held_training_text_trains_even_after_that_example_left() -> None:
    gone, newcomer = twins_drawn_apart()
    held = [HeldText(1, gone, Split.TRAIN)]  # in a snapshot's train side once; deleted since
    result = stable_splits([SplitItem(2, newcomer, "billing")], held=held, eval_fraction=0.5)
    assert result.splits == {2: Split.TRAIN}


def test_a_bridge_between_the_sides_is_left_out_and_the_pinned_stay() -> None:
    # Eleven shared words, shuffled so that no shingles link them: T and E share 11 of 13 distinct
    # words (0.846, not linked); X has both extra words, 12 of 13 with each (0.923, linked to both).
    shared = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kit"]
    rng = random.Random(1)
    a, b, c = (rng.sample(shared, len(shared)) for _ in range(3))
    train_text, eval_text = " ".join(["toad", *a]), " ".join([*b, "emu"])
    bridge = " ".join([*c[:6], "toad", "emu", *c[6:]])
    assert near_duplicate_groups([train_text, eval_text]) == [0, 1]
    assert near_duplicate_groups([train_text, bridge]) == near_duplicate_groups([eval_text, bridge]) == [0, 0]
    pinned = {1: Split.TRAIN, 2: Split.EVAL}
    held = [HeldText(1, train_text, Split.TRAIN), HeldText(2, eval_text, Split.EVAL)]
    items = [SplitItem(1, train_text, "t"), SplitItem(2, eval_text, "t"), SplitItem(3, bridge, "t")]
    result = stable_splits(items, pinned, held, 0.5)
    assert result.splits == {1: Split.TRAIN, 2: Split.EVAL} and result.excluded == {3: BRIDGE}
    # The same bridge with only one side held goes to that side.
    assert stable_splits([SplitItem(3, bridge, "t")], held=held[:1]).splits == {3: Split.TRAIN}


def test_an_eval_example_edited_into_a_training_twin_is_left_out() -> None:
    train_text = "my card was charged twice and the invoice is wrong"
    pinned = {1: Split.TRAIN, 2: Split.EVAL}
    held = [HeldText(1, train_text, Split.TRAIN), HeldText(2, "the parcel has not arrived yet", Split.EVAL)]
    edited = "the invoice is wrong and my card was charged twice"  # example 2, rewritten
    result = stable_splits(
        [SplitItem(1, train_text, "billing"), SplitItem(2, edited, "billing")], pinned, held, 0.5
    )
    assert result.splits == {1: Split.TRAIN} and result.excluded == {2: EVAL_TWIN_OF_TRAIN}


def test_clause_reorderings_are_grouped_with_the_stated_threshold() -> None:
    """A routing dataset's held-out texts whose training twin has its clauses in another order:
    char and word shingles miss them, the order-insensitive word sets (Jaccard ≥ 0.85) do not."""
    clauses = [
        ("I was charged twice", "my invoice shows the wrong total"),
        ("the app crashes on start", "I already reinstalled it"),
        ("my parcel has not arrived", "the tracking page shows no update since Monday"),
        ("I cannot log in", "the reset email never arrives"),
        ("please cancel my plan", "and refund the last payment"),
    ]
    train = [f"{a}, and {b}" for a, b in clauses]
    held_out = [f"{b}, and {a}" for a, b in clauses]
    for one, other in zip(train, held_out, strict=True):
        chars, words, _ = _profiles(one)
        chars2, words2, _ = _profiles(other)
        assert chars is not None and chars2 is not None
        assert len(chars & chars2) / len(chars | chars2) < 0.85, "shingles alone would not group them"
        assert near_duplicate_groups([one, other]) == [0, 0]
    # The threshold on word sets: one word changed in 13 distinct words links (12/14 ≥ 0.85), in 12
    # it does not (11/13 < 0.85).
    words13 = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]
    words13 += ["hotel", "india", "juliet", "kilo", "lima", "mike"]
    changed = [*words13[:-1], "oscar"]
    assert near_duplicate_groups([" ".join(words13), " ".join(reversed(changed))]) == [0, 0]
    words12, changed = words13[:12], [*words13[:11], "oscar"]
    assert near_duplicate_groups([" ".join(words12), " ".join(reversed(changed))]) == [0, 1]
    pinned = {i: Split.TRAIN for i in range(len(train))}
    held = [HeldText(i, text, Split.TRAIN) for i, text in enumerate(train)]
    items = [SplitItem(100 + i, text, "x") for i, text in enumerate(held_out)]
    assert set(stable_splits(items, pinned, held, 0.5).splits.values()) == {Split.TRAIN}


def _profiles(text: str):
    from runner.data.textnorm import _shingle_profile

    return _shingle_profile(canonical(text))


def run_history(history: list[Step]) -> SnapshotLog:
    """Apply a history to an in-memory dataset, taking snapshots as build_snapshot does."""
    texts: list[str] = []
    labels: dict[int, str] = {}
    deleted: set[int] = set()
    pinned: dict[int, Split] = {}
    held: list[HeldText] = []
    log = SnapshotLog()
    for step in history:
        kind = step[0]
        if kind == "add":
            texts.append(step[1])
            continue
        if kind == "snapshot":
            items = [
                SplitItem(i, texts[i], labels[i])
                for i in range(len(texts))
                if i in labels and i not in deleted
            ]
            result = stable_splits(items, {i.id: pinned[i.id] for i in items if i.id in pinned}, held, 0.3)
            rows = {i.id: (i.text, result.splits[i.id]) for i in items if i.id in result.splits}
            for item in items:  # a pinned item is on its side or left out
                assert item.id in result.splits or item.id in result.excluded
                if item.id in pinned and item.id in result.splits:
                    assert result.splits[item.id] is pinned[item.id]
            log.check_and_add(rows)
            for example_id, (text, side) in rows.items():
                pinned.setdefault(example_id, side)
                held.append(HeldText(example_id, text, side))
            continue
        if not texts:
            continue
        n = step[1] % len(texts)
        if kind == "label":
            labels[n] = step[2]
        elif kind == "unlabel":
            labels.pop(n, None)
        elif kind == "edit":
            texts[n] = step[2]
            labels.pop(n, None)  # an edit makes the votes stale
        elif kind == "delete":
            deleted.add(n)
    return log


@settings(max_examples=300, deadline=None)
@given(histories())
def test_no_history_moves_a_snapshotted_example_or_splits_a_near_duplicate_group(history: list[Step]) -> None:
    run_history(history)


def test_the_histories_take_snapshots_with_twins_on_both_sides() -> None:
    """The property test is not vacuous: a fixed history reaches the interesting cases."""
    first, second = twins_drawn_apart(eval_fraction=0.3)
    history: list[Step] = [
        ("add", "the parcel has not arrived yet"),
        ("add", first),
        ("add", second),
        ("label", 2, LABELS[0]),
        ("label", 0, LABELS[1]),
        ("snapshot",),
        ("label", 1, LABELS[0]),
        ("delete", 2),
        ("snapshot",),
    ]
    log = run_history(history)
    assert [sorted(s) for s in log.snapshots] == [[0, 2], [0, 1]]
    assert log.snapshots[1][1][1] is log.snapshots[0][2][1]  # the twin took the pinned side
