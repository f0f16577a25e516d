"""Snapshots: immutable, content-addressed copies of a project's usable examples and their splits."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from runner.core.db import insert_ignore
from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project, Snapshot, SnapshotExample, Split
from runner.data import split
from runner.data.gates import project_stats, training_label, usable
from runner.data.projects import legend


def held_texts(session: Session, project: Project) -> list[split.HeldText]:
    """Every text an earlier snapshot of `project` held, with its side (deleted examples and old
    versions of edited ones included)."""
    rows = session.exec(
        select(SnapshotExample.example_id, SnapshotExample.input_text, SnapshotExample.split)
        .join(Snapshot, col(Snapshot.id) == col(SnapshotExample.snapshot_id))
        .where(Snapshot.project_id == project.id)
        .distinct()
        .order_by(col(SnapshotExample.example_id), col(SnapshotExample.input_text))
    ).all()
    return [split.HeldText(example_id, text, Split(side)) for example_id, text, side in rows]


def _lock(session: Session, project: Project) -> None:
    """Take snapshots of one project one at a time (PostgreSQL: a row lock; SQLite's transactions
    are serial already), so two never pin the same example to different sides."""
    session.exec(select(Project.id).where(Project.id == project.id).with_for_update()).first()


def build_snapshot(session: Session, project: Project, *, created_by: str = "") -> tuple[Snapshot, bool]:
    """Freeze the usable examples into an immutable, content-addressed snapshot.

    Splits come from `runner.data.split.stable_splits`: an example that was in any earlier snapshot
    keeps its side (``example.split``, written when it first enters a snapshot), near duplicates
    never straddle, and an example that cannot be placed without a group straddling is left out
    (the snapshot's statistics list them under ``excluded``). The same content gives the same id;
    taking a snapshot twice returns the existing one.

    Returns:
        (snapshot, created).

    Raises:
        DatasetError: there is no usable example yet.
    """
    _lock(session, project)
    stats = project_stats(session, project)
    decided = [s for s in stats.examples if usable(s)]
    items = [
        split.SplitItem(s.example.id or 0, s.example.input_text, training_label(project, s)) for s in decided
    ]
    pinned = {s.example.id or 0: s.example.split for s in decided if s.example.split is not None}
    assignment = split.stable_splits(items, pinned, held_texts(session, project), project.eval_fraction)
    decided = [s for s in decided if (s.example.id or 0) in assignment.splits]
    if not decided:
        raise DatasetError("No example has reached consensus yet: nothing to snapshot.")
    rows = [
        SnapshotExample(
            snapshot_id="",
            example_id=s.example.id or 0,
            split=assignment.splits[s.example.id or 0],
            input_text=s.example.input_text,
            target=s.label if s.example.target_text is None else s.example.target_text,  # type: ignore[arg-type]
            label=training_label(project, s),
        )
        for s in decided
    ]
    addressed = [
        (
            split.SplitItem(r.example_id, f"{project.instructions}\x1e{r.input_text}\x1e{r.target}", r.label),
            r.split,
        )
        for r in rows
    ]
    digest = split.content_hash(addressed)
    existing = session.get(Snapshot, digest)
    if existing is not None:
        return existing, False
    stats_doc = {
        "counts": stats.counts,
        "excluded": {str(k): why for k, why in sorted(assignment.excluded.items())},
        "splits": split.split_report([i for i, _ in addressed], {i.id: Split(s) for i, s in addressed}),
        "agreement": {
            "method": stats.agreement.method,
            "coefficient": stats.agreement.coefficient,
            "percent": stats.agreement.percent,
            "raters": stats.agreement.raters,
            "items_compared": stats.agreement.items_compared,
        },
        "legend": legend(project),
        "task_type": project.task_type,
        "instructions": project.instructions,
        "fields": list(project.fields),
    }
    snapshot = Snapshot(
        id=digest,
        project_id=project.id or 0,
        created_by=created_by,
        n_train=sum(1 for r in rows if r.split == Split.TRAIN),
        n_eval=sum(1 for r in rows if r.split == Split.EVAL),
        stats=stats_doc,
    )
    # Taken concurrently by someone else: same content, same snapshot; the first one stays.
    if not insert_ignore(session, snapshot, conflict=("id",)):
        winner = session.get(Snapshot, digest)
        assert winner is not None
        return winner, False
    for row in rows:
        row.snapshot_id = digest
        session.add(row)
        # Pinned for good: the side an example takes in its first snapshot is its side from now on.
        session.execute(
            update(Example)
            .where(col(Example.id) == row.example_id, col(Example.split).is_(None))
            .values(split=row.split)
        )
    session.flush()
    return session.get(Snapshot, digest) or snapshot, True


def snapshot_rows(session: Session, snapshot_id: str) -> list[SnapshotExample]:
    return list(
        session.exec(
            select(SnapshotExample)
            .where(SnapshotExample.snapshot_id == snapshot_id)
            .order_by(col(SnapshotExample.example_id))
        ).all()
    )


def latest_snapshot(session: Session, project: Project) -> Snapshot | None:
    return session.exec(
        select(Snapshot).where(Snapshot.project_id == project.id).order_by(col(Snapshot.created_at).desc())
    ).first()


def get_snapshot(session: Session, project: Project, snapshot_id: str) -> Snapshot:
    """A snapshot of `project` by id or unique id prefix.

    Raises:
        DatasetError: no such snapshot, or the prefix is ambiguous.
    """
    if len(snapshot_id.strip()) < 4:
        raise DatasetError("Give at least the first 4 characters of the snapshot id.")
    matches = session.exec(
        select(Snapshot).where(
            Snapshot.project_id == project.id,
            col(Snapshot.id).startswith(snapshot_id.strip(), autoescape=True),
        )
    ).all()
    if len(matches) != 1:
        raise DatasetError(
            f"{'No' if not matches else 'More than one'} snapshot of {project.name} matches {snapshot_id!r}."
        )
    return matches[0]
