"""Blind A/B comparisons of versions, judged by reviewers' reactions.

`start` draws n inputs — held-out examples of the project's latest snapshot (its eval side: no
version was trained on them, since an example keeps its side in every later snapshot) or the latest
pilot messages — and gives each item a pair of the versions compared (every pair as often as n
allows, in a drawn order) and a drawn order of the two outputs, shown as A and B. The seed is
stored and the order of every item is stored, so the reveal is exact. Outputs are predictions
asked of the versions (`runner.registry.predictions`), answered by the predict worker, which posts
each item once both answers are in.

Reviewers react 🅰️ (``a``), 🅱️ (``b``) or 🟰 (``heavy_equals_sign``). Each reaction is stored under a
unique key (a redelivery is a no-op) and a reviewer's live vote on an item is the latest reaction
still there: changing it means adding another, removing the latest falls back to the one before.
A comparison closes when its owner closes it or when every item has the votes it needs; the result
(`runner.data.abtest`) is then stored and the identities are shown.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from runner.core.db import insert_ignore
from runner.core.exceptions import DatasetError
from runner.core.models import (
    AbChoice,
    Comparison,
    ComparisonItem,
    ComparisonReaction,
    ComparisonStatus,
    ModelVersion,
    Prediction,
    PredictionStatus,
    Project,
    Snapshot,
    SnapshotExample,
    Split,
    utcnow,
)
from runner.data import abtest
from runner.registry import predictions, versions

EMOJI = {"a": AbChoice.A, "b": AbChoice.B, "heavy_equals_sign": AbChoice.TIE}
SOURCES = ("heldout", "pilot")
SOURCE_NAMES = {"heldout": "held-out examples of the latest snapshot", "pilot": "recent pilot messages"}
DEFAULT_ITEMS = 20
MAX_ITEMS = 100  # items are posted one message each: a comparison stays readable
DEFAULT_VOTES = 2


@dataclass(frozen=True)
class Started:
    """A comparison recorded, its predictions asked (to be enqueued after the commit)."""

    comparison_id: int
    project: str
    channel_id: str
    source: str
    items: int
    versions: int
    votes_needed: int
    prediction_ids: list[int]
    numbers: list[int]


def _pool(session: Session, project: Project, source: str) -> list[tuple[str, str]]:
    """``(input, origin)`` candidates from `source`, in a stable order."""
    if source == "heldout":
        latest = session.exec(
            select(Snapshot)
            .where(Snapshot.project_id == project.id)
            .order_by(col(Snapshot.created_at).desc(), col(Snapshot.id))
        ).first()
        if latest is None:
            return []
        rows = session.exec(
            select(SnapshotExample)
            .where(SnapshotExample.snapshot_id == latest.id, SnapshotExample.split == Split.EVAL)
            .order_by(col(SnapshotExample.example_id))
        ).all()
        return [(row.input_text, f"example {row.example_id}") for row in rows if row.input_text.strip()]
    seen: set[tuple[str, str]] = set()
    found = []
    for row in session.exec(
        select(Prediction)
        .where(
            Prediction.project_id == project.id,
            Prediction.channel_id != "",
            col(Prediction.shadow).is_(False),
        )
        .order_by(col(Prediction.id).desc())
    ).all():
        key = (row.channel_id, row.message_ts)
        if key in seen or not row.input_text.strip():
            continue
        seen.add(key)
        found.append((row.input_text, f"pilot {row.channel_id}/{row.message_ts}"[:64]))
        if len(found) >= MAX_ITEMS:
            break
    return found


def start(
    session: Session,
    project: Project,
    numbers: list[int],
    *,
    by: str,
    n: int = DEFAULT_ITEMS,
    votes_needed: int | None = None,
    source: str | None = None,
    seed: int | None = None,
) -> Started:
    """Record a comparison of versions `numbers` of `project` and ask every output it shows.

    Args:
        n: items to post (at least one per pair of versions).
        votes_needed: live votes per item before the comparison closes by itself (default: two, or
            one when the project lists a single reviewer and no user group).
        source: ``heldout`` or ``pilot``; None takes held-out examples when there are enough.
        seed: draws the inputs, the pairs and the orders (None: a fresh one, stored).

    Raises:
        DatasetError: fewer than two distinct versions, a bad count, or not enough inputs.
        RegistryError: an unknown version.
    """
    assert project.id is not None
    if len(set(numbers)) != len(numbers) or len(numbers) < 2:
        raise DatasetError("Name two or more different versions to compare, e.g. `v2 v3`.")
    chosen = [versions.get_version(session, project, number) for number in numbers]
    pairs = list(itertools.combinations(range(len(chosen)), 2))
    if not len(pairs) <= n <= MAX_ITEMS:
        raise DatasetError(
            f"n must be between {len(pairs)} (one item per pair of versions) and {MAX_ITEMS}; got {n}."
        )
    if votes_needed is None:
        votes_needed = DEFAULT_VOTES if project.reviewer_groups or len(project.reviewers) > 1 else 1
    if votes_needed < 1:
        raise DatasetError("votes must be at least 1.")
    pool, taken = _inputs(session, project, source, len(pairs))
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    draw = random.Random(seed)
    inputs = draw.sample(pool, min(n, len(pool)))
    draw.shuffle(pairs)
    comparison = Comparison(
        project_id=project.id,
        version_ids=[v.id or 0 for v in chosen],
        source=taken,
        n=len(inputs),
        votes_needed=votes_needed,
        seed=seed,
        channel_id=project.channel_id,
        created_by=by,
    )
    session.add(comparison)
    session.flush()
    assert comparison.id is not None
    asked = []
    for position, (text, origin) in enumerate(inputs, start=1):
        first, second = pairs[(position - 1) % len(pairs)]
        shown_a, shown_b = (chosen[first], chosen[second])
        if draw.random() < 0.5:
            shown_a, shown_b = shown_b, shown_a
        key = f"ab:{comparison.id}:{position}"
        a, _ = predictions.ask(session, project, shown_a, text, message_ts=key)
        b, _ = predictions.ask(session, project, shown_b, text, message_ts=key)
        assert a.id is not None and b.id is not None
        session.add(
            ComparisonItem(
                comparison_id=comparison.id,
                position=position,
                input_text=text,
                origin=origin,
                version_a_id=shown_a.id or 0,
                version_b_id=shown_b.id or 0,
                prediction_a_id=a.id,
                prediction_b_id=b.id,
            )
        )
        asked.extend([a.id, b.id])
    return Started(
        comparison.id,
        project.name,
        project.channel_id,
        taken,
        len(inputs),
        len(chosen),
        votes_needed,
        asked,
        [v.number for v in chosen],
    )


def _inputs(
    session: Session, project: Project, source: str | None, least: int
) -> tuple[list[tuple[str, str]], str]:
    """The pool of inputs and the source it came from (held-out first when `source` is None)."""
    if source is not None and source not in SOURCES:
        raise DatasetError(f"from= takes {' or '.join(SOURCES)}, not {source!r}.")
    for name in (source,) if source else SOURCES:
        pool = _pool(session, project, name)
        if len(pool) >= least:
            return pool, name
    wanted = SOURCE_NAMES[source] if source else " or ".join(SOURCE_NAMES.values())
    raise DatasetError(
        f"*{project.name}* has too few {wanted} to compare on: at least {least} needed "
        "(snapshot the dataset, or turn the pilot on for a while)."
    )


# --- items and votes --------------------------------------------------------------------------------


def items(session: Session, comparison_id: int) -> list[ComparisonItem]:
    return list(
        session.exec(
            select(ComparisonItem)
            .where(ComparisonItem.comparison_id == comparison_id)
            .order_by(col(ComparisonItem.position))
        ).all()
    )


def ready_items(session: Session) -> list[int]:
    """Items of open comparisons not posted yet whose two outputs are answered (or failed), by
    comparison and position: what the predict worker posts after each batch (an item Slack refused
    earlier included)."""
    found = session.exec(
        select(ComparisonItem)
        .join(Comparison, col(Comparison.id) == col(ComparisonItem.comparison_id))
        .where(col(ComparisonItem.posted_at).is_(None), Comparison.status == ComparisonStatus.OPEN)
        .order_by(col(ComparisonItem.comparison_id), col(ComparisonItem.position))
    ).all()
    finished = (PredictionStatus.DONE, PredictionStatus.FAILED)
    ready = []
    for item in found:
        a = session.get(Prediction, item.prediction_a_id)
        b = session.get(Prediction, item.prediction_b_id)
        if a is not None and b is not None and a.status in finished and b.status in finished:
            assert item.id is not None
            ready.append(item.id)
    return ready


def claim_post(session: Session, item_id: int) -> bool:
    """Claim posting an item (a compare-and-set: two workers never post it twice)."""
    claimed = session.execute(
        update(ComparisonItem)
        .where(col(ComparisonItem.id) == item_id, col(ComparisonItem.posted_at).is_(None))
        .values(posted_at=utcnow())
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def item_at(session: Session, channel_id: str, ts: str) -> tuple[Project, Comparison, ComparisonItem] | None:
    """The item posted as message `ts` in `channel_id`, with its comparison and project."""
    found = session.exec(
        select(ComparisonItem, Comparison)
        .join(Comparison, col(Comparison.id) == col(ComparisonItem.comparison_id))
        .where(ComparisonItem.message_ts == ts, Comparison.channel_id == channel_id)
    ).first()
    if found is None:
        return None
    item, comparison = found
    project = session.get(Project, comparison.project_id)
    assert project is not None
    return project, comparison, item


def react(session: Session, item: ComparisonItem, reviewer: str, choice: AbChoice, *, added: bool) -> bool:
    """Record or retract a reviewer's reaction on an item; True when something changed (False for a
    redelivery, or a removal of a reaction never counted)."""
    assert item.id is not None
    if added:
        return insert_ignore(
            session,
            ComparisonReaction(item_id=item.id, reviewer_id=reviewer, choice=choice),
            conflict=("item_id", "reviewer_id", "choice"),
        )
    removed = session.execute(
        delete(ComparisonReaction).where(
            col(ComparisonReaction.item_id) == item.id,
            col(ComparisonReaction.reviewer_id) == reviewer,
            col(ComparisonReaction.choice) == choice,
        )
    )
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def live_votes(session: Session, comparison_id: int) -> dict[int, dict[str, AbChoice]]:
    """Item id → {reviewer → their live vote}: the latest of their reactions still there."""
    rows = session.exec(
        select(ComparisonReaction)
        .join(ComparisonItem, col(ComparisonItem.id) == col(ComparisonReaction.item_id))
        .where(ComparisonItem.comparison_id == comparison_id)
        .order_by(col(ComparisonReaction.id))
    ).all()
    votes: dict[int, dict[str, AbChoice]] = defaultdict(dict)
    for row in rows:
        votes[row.item_id][row.reviewer_id] = row.choice  # later reactions override earlier ones
    return votes


def complete(session: Session, comparison: Comparison) -> bool:
    """Every item of `comparison` has the live votes it needs."""
    assert comparison.id is not None
    votes = live_votes(session, comparison.id)
    return all(
        len(votes.get(item.id or 0, {})) >= comparison.votes_needed for item in items(session, comparison.id)
    )


# --- closing and the result -------------------------------------------------------------------------


def get(session: Session, comparison_id: int) -> Comparison:
    """Comparison `comparison_id`.

    Raises:
        DatasetError: there is none.
    """
    comparison = session.get(Comparison, comparison_id)
    if comparison is None:
        raise DatasetError(f"There is no blind A/B #{comparison_id}.")
    return comparison


def close(session: Session, comparison: Comparison, *, by: str) -> Comparison:
    """Close an open comparison (a compare-and-set: it closes once) and store its result.

    Raises:
        DatasetError: it is closed already.
    """
    assert comparison.id is not None
    closed = session.execute(
        update(Comparison)
        .where(col(Comparison.id) == comparison.id, col(Comparison.status) == ComparisonStatus.OPEN)
        .values(status=ComparisonStatus.CLOSED, closed_by=by, closed_at=utcnow())
    )
    if not closed.rowcount:  # type: ignore[attr-defined]
        raise DatasetError(f"Blind A/B #{comparison.id} is closed already.")
    session.refresh(comparison)
    comparison.result = result_of(session, comparison)
    session.add(comparison)
    return comparison


def judgements(session: Session, comparison: Comparison) -> list[abtest.Judgement]:
    """Every live vote, as version A (``first``) against version B (by version id)."""
    assert comparison.id is not None
    votes = live_votes(session, comparison.id)
    found = []
    for item in items(session, comparison.id):
        for choice in votes.get(item.id or 0, {}).values():
            found.append(
                abtest.Judgement(item.id, item.version_a_id, item.version_b_id, abtest.score_of(choice))
            )
    return found


def result_of(session: Session, comparison: Comparison) -> dict[str, Any]:
    """Win rates (ties half) with bootstrap intervals, each pair's record, and Bradley–Terry scores
    when more than two versions were compared. Stored on the comparison as it closes."""
    judged = judgements(session, comparison)
    numbers = {vid: _number(session, vid) for vid in comparison.version_ids}
    strength = abtest.bradley_terry(judged) if len(numbers) > 2 else {}
    rows = []
    for vid in comparison.version_ids:
        record = abtest.standing(judged, vid, seed=comparison.seed)
        rows.append(
            {
                "id": vid,
                "version": numbers[vid],
                "points": record.points,
                "votes": record.votes,
                "win_rate": record.win_rate,
                "ci": list(record.interval) if record.interval else None,
                "bt": strength.get(vid),
            }
        )
    pairs = []
    for first, second in itertools.combinations(comparison.version_ids, 2):
        between = abtest.head_to_head(judged, first, second)
        record = abtest.standing(between, first, seed=comparison.seed)
        pairs.append(
            {
                "ids": [first, second],
                "versions": [numbers[first], numbers[second]],
                "points": record.points,
                "votes": record.votes,
                "win_rate": record.win_rate,
                "ci": list(record.interval) if record.interval else None,
            }
        )
    return {
        "votes": len(judged),
        "items_voted": len({j.item for j in judged}),
        "items": comparison.n,
        "ties_count": abtest.TIE,
        "versions": rows,
        "pairs": pairs,
    }


def _number(session: Session, version_id: int) -> int:
    version = session.get(ModelVersion, version_id)
    return version.number if version else 0


def pair_rate(result: dict[str, Any], version_id: int, other_id: int) -> tuple[float | None, int]:
    """`version_id`'s win rate against `other_id` in a stored result, and the votes between them."""
    for pair in result.get("pairs", []):
        ids = pair["ids"]
        if set(ids) == {version_id, other_id} and pair["win_rate"] is not None:
            rate = pair["win_rate"] if ids[0] == version_id else 1 - pair["win_rate"]
            return rate, int(pair["votes"])
    return None, 0


def closed_with(session: Session, version: ModelVersion) -> list[Comparison]:
    """Closed comparisons that included `version`, newest first."""
    rows = session.exec(
        select(Comparison)
        .where(Comparison.project_id == version.project_id, Comparison.status == ComparisonStatus.CLOSED)
        .order_by(col(Comparison.closed_at).desc(), col(Comparison.id).desc())
    ).all()
    return [c for c in rows if version.id in c.version_ids]


def won_against(session: Session, candidate: ModelVersion, serving: ModelVersion) -> bool:
    """Whether `candidate` won the latest closed comparison that set it against `serving` (a win rate
    above one half between the two, ties counting half; a later loss undoes an earlier win)."""
    assert serving.id is not None and candidate.id is not None
    for comparison in closed_with(session, candidate):
        rate, votes = pair_rate(comparison.result or {}, candidate.id, serving.id)
        if votes:
            return rate is not None and rate > 0.5
    return False


def version_lines(session: Session, version: ModelVersion) -> list[str]:
    """For the version's evaluation summary: one line per closed comparison that included it."""
    assert version.id is not None
    lines = []
    for comparison in closed_with(session, version)[:5]:
        result = comparison.result or {}
        row = next((r for r in result.get("versions", []) if r["id"] == version.id), None)
        if row is None:
            continue
        against = [f"v{_number(session, other)}" for other in comparison.version_ids if other != version.id]
        lines.append(
            f"Blind A/B #{comparison.id} against {', '.join(against)}: "
            + describe_rate(row["win_rate"], row["ci"], row["votes"])
        )
    return lines


def describe_rate(rate: float | None, interval: list[float] | None, votes: int) -> str:
    """``won 75% of 8 votes (95% CI 50–100%)`` for people."""
    if rate is None:
        return "no votes"
    text = f"won {rate:.0%} of {votes} vote{'s' if votes != 1 else ''}"
    if interval:
        text += f" (95% CI {interval[0] * 100:.0f}–{interval[1] * 100:.0f}%)"
    return text


def home_line(session: Session, project: Project) -> str | None:
    """For App Home: the project's latest closed comparison (each version's win rate) and whether
    promote requires a won one; None when there is neither."""
    latest = session.exec(
        select(Comparison)
        .where(Comparison.project_id == project.id, Comparison.status == ComparisonStatus.CLOSED)
        .order_by(col(Comparison.closed_at).desc(), col(Comparison.id).desc())
    ).first()
    parts = []
    if latest is not None and latest.result:
        rows = sorted(latest.result.get("versions", []), key=lambda r: -(r["win_rate"] or 0))
        parts.append(
            f":ab: Blind A/B #{latest.id}: "
            + " · ".join(
                f"v{r['version']} {describe_rate(r['win_rate'], r['ci'], r['votes'])}" for r in rows[:5]
            )
        )
    if project.require_ab:
        parts.append("promote requires a won blind A/B against production")
    return " · ".join(parts) if parts else None


def set_require_ab(session: Session, project: Project, *, enabled: bool) -> Project:
    project.require_ab = enabled
    session.add(project)
    return project
