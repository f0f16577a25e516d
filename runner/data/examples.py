"""Examples and votes: Slack messages (or imported rows) in a project, and reviewers' reactions on them.

Every write is keyed by Slack's own ids (channel and message ts; example, reviewer and value), so a
redelivered event changes nothing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from runner.core.db import insert_ignore
from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project, ReviewerHint, TaskType, Vote, utcnow
from runner.data import textnorm
from runner.data.projects import legend

TARGET_SEPARATOR = re.compile(r"^\s*---\s*$", re.MULTILINE)
# Past this many characters an example is kept but flagged: long inputs dominate a small model's
# context (and token budget) and are often pasted logs rather than the task's real inputs.
OVERLONG_CHARS = 4000


def split_target(project: Project, text: str) -> tuple[str, str | None]:
    """Split a contribution into (input, target output) for tasks that have a target.

    Raises:
        DatasetError: the target is missing, or (extraction) not a JSON object with the fields.
    """
    if project.task_type == TaskType.CLASSIFICATION:
        return text.strip(), None
    parts = TARGET_SEPARATOR.split(text, maxsplit=1)
    if len(parts) < 2 or not parts[1].strip() or not parts[0].strip():
        raise DatasetError("Put the input first, then a line with only `---`, then the target output.")
    source, target = parts[0].strip(), textnorm.slack_to_plain(parts[1]).strip()
    if project.task_type == TaskType.EXTRACTION:
        check_extraction_target(project, target)
    return source, target


def check_extraction_target(project: Project, target: str) -> None:
    """Raises DatasetError unless `target` is a JSON object with exactly the project's fields."""
    try:
        value = json.loads(target)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"The target must be JSON: {exc.msg} at character {exc.pos}.") from exc
    if not isinstance(value, dict):
        raise DatasetError("The target must be a JSON object.")
    expected = set(project.fields)
    missing, extra = expected - value.keys(), value.keys() - expected
    if missing or extra:
        raise DatasetError(
            "The target's fields must be "
            + ", ".join(sorted(expected))
            + (f"; missing {', '.join(sorted(missing))}" if missing else "")
            + (f"; unexpected {', '.join(sorted(extra))}" if extra else "")
        )


def check_text(source: str, target: str | None) -> None:
    """The rules every example's text follows, whatever its origin and database.

    Raises:
        DatasetError: the input (or target) is empty or shows nothing (only spaces or invisible
            characters such as zero-width spaces), or holds a NUL character (which PostgreSQL
            cannot store; Slack text has it removed before it gets here).
    """
    for text, what in ((source, "example"), (target, "target output")):
        if text is None:
            continue
        if textnorm.NUL in text:
            raise DatasetError(f"The {what} contains a NUL character (\\u0000); remove it and try again.")
        if not text.strip():
            raise DatasetError(f"The {what} is empty once formatting is removed.")
        if not textnorm.has_visible(text):
            raise DatasetError(f"The {what} shows nothing: it holds only spaces or invisible characters.")


def add_example(
    session: Session,
    project: Project,
    *,
    channel_id: str,
    message_ts: str,
    author_id: str,
    text: str,
    target: str | None = None,
    source: str = "thread",
    final_label: str | None = None,
    decided_by: str | None = None,
    normalise: bool = True,
) -> tuple[Example, bool]:
    """Add an example (idempotent on the Slack message). Returns (example, created).

    `text` is the Slack text as posted; the input is normalised to plain text (unless `normalise`
    is False: imported rows are plain already). When `target` is None and the task has targets, it
    is split off `text` at a ``---`` line.

    Raises:
        DatasetError: the contribution does not fit the task (the message says how to fix it).
    """
    existing = find_example(session, project.id, channel_id, message_ts)
    if existing is not None:
        return existing, False
    if target is None:
        source_text, target = split_target(project, text)
    else:
        source_text = text
        if project.task_type != TaskType.CLASSIFICATION and not target.strip():
            raise DatasetError("The target output is empty.")
        if project.task_type == TaskType.EXTRACTION:
            check_extraction_target(project, target)
    plain = (textnorm.slack_to_plain(source_text) if normalise else source_text).strip()
    check_text(plain, target)
    assert project.id is not None
    example = Example(
        project_id=project.id,
        channel_id=channel_id,
        message_ts=message_ts,
        author_id=author_id,
        source=source,
        raw_text=text,
        input_text=plain,
        target_text=target,
        overlong=len(plain) > OVERLONG_CHARS,
        final_label=final_label,
        decided_by=decided_by,
        decided_at=utcnow() if final_label else None,
    )
    # The same message delivered twice at once: the first insert wins, the other finds it.
    created = insert_ignore(session, example, conflict=("project_id", "channel_id", "message_ts"))
    stored = find_example(session, project.id, channel_id, message_ts)
    assert stored is not None
    return stored, created


def find_example(
    session: Session, project_id: int | None, channel_id: str, message_ts: str
) -> Example | None:
    return session.exec(
        select(Example).where(
            Example.project_id == project_id,
            Example.channel_id == channel_id,
            Example.message_ts == message_ts,
        )
    ).first()


_EXAMPLE_AT = (
    select(Example, Project)
    .join(Project, col(Project.id) == col(Example.project_id))
    .where(
        col(Example.channel_id) == bindparam("channel"),
        col(Example.message_ts) == bindparam("ts"),
        col(Example.deleted_at).is_(None),
    )
)


def example_at(session: Session, channel_id: str, message_ts: str) -> tuple[Project, Example] | None:
    """The live example posted as message `message_ts` in `channel_id`, with its project."""
    row = session.execute(_EXAMPLE_AT, {"channel": channel_id, "ts": message_ts}).first()
    return (row[1], row[0]) if row else None


_VOTE_TARGET = (
    select(Project, col(Example.id))
    .join(Example, col(Project.id) == col(Example.project_id))
    .where(
        col(Example.channel_id) == bindparam("channel"),
        col(Example.message_ts) == bindparam("ts"),
        col(Example.deleted_at).is_(None),
    )
)


def vote_target(session: Session, channel_id: str, message_ts: str) -> tuple[Project, int] | None:
    """The project and id of the live example at message `message_ts` (what a reaction needs: the
    reaction path loads nothing more)."""
    row = session.execute(_VOTE_TARGET, {"channel": channel_id, "ts": message_ts}).first()
    return (row[0], row[1]) if row else None


def edit_example(
    session: Session, channel_id: str, message_ts: str, text: str
) -> tuple[Project, Example] | None:
    """Apply an edit of the Slack message: new text, and every vote on it marked stale.

    Raises:
        DatasetError: the edited text no longer fits the task (the example is left as it was).
    """
    found = example_at(session, channel_id, message_ts)
    if found is None:
        return None
    project, example = found
    source_text, target = split_target(project, text)
    plain = textnorm.slack_to_plain(source_text).strip()
    check_text(plain, target)
    example.raw_text = text
    example.input_text = plain
    example.target_text = target
    example.overlong = len(example.input_text) > OVERLONG_CHARS
    example.edited_at = utcnow()
    session.add(example)
    session.execute(update(Vote).where(col(Vote.example_id) == example.id).values(stale=True))
    return project, example


def delete_example(session: Session, channel_id: str, message_ts: str) -> tuple[Project, Example] | None:
    """The Slack message was deleted: the example leaves the dataset (kept, marked deleted)."""
    found = example_at(session, channel_id, message_ts)
    if found is None:
        return None
    project, example = found
    example.deleted_at = utcnow()
    session.add(example)
    return project, example


def _vote_upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    votes = Vote.__table__  # type: ignore[attr-defined]
    statement = insert(votes).values(
        example_id=bindparam("example"),
        reviewer_id=bindparam("reviewer"),
        value=bindparam("value"),
        stale=False,
        created_at=bindparam("at"),
    )
    return statement.on_conflict_do_update(
        index_elements=["example_id", "reviewer_id", "value"],
        set_={"stale": False, "created_at": statement.excluded.created_at},
        where=votes.c.stale.is_(True),
    ).returning(votes.c.id)


# Built once: votes arrive in bursts of hundreds a second.
_VOTE_UPSERT = {dialect: _vote_upsert(dialect) for dialect in ("postgresql", "sqlite")}
_VOTE_DELETE = delete(Vote).where(
    col(Vote.example_id) == bindparam("example"),
    col(Vote.reviewer_id) == bindparam("reviewer"),
    col(Vote.value) == bindparam("value"),
)


def add_vote(session: Session, example_id: int, reviewer_id: str, value: str) -> bool:
    """Record a reviewer's vote; False when this exact vote is already recorded (a redelivery).

    A stale vote with the same value (cast before an edit) is refreshed instead. One statement,
    ``INSERT … ON CONFLICT DO UPDATE … WHERE stale``, so concurrent deliveries count once.
    """
    upsert = _VOTE_UPSERT[session.get_bind().dialect.name]
    params = {"example": example_id, "reviewer": reviewer_id, "value": value, "at": utcnow()}
    return session.execute(upsert, params).first() is not None  # a row back only when inserted or refreshed


def remove_vote(session: Session, example_id: int, reviewer_id: str, value: str) -> bool:
    """Retract a vote; False when there was none (a redelivered removal)."""
    removed = session.execute(_VOTE_DELETE, {"example": example_id, "reviewer": reviewer_id, "value": value})
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def hint_once(session: Session, project: Project, user_id: str) -> bool:
    """True the first time `user_id` (not a reviewer) reacts in `project`; False afterwards."""
    assert project.id is not None
    return insert_ignore(
        session, ReviewerHint(project_id=project.id, user_id=user_id), conflict=("project_id", "user_id")
    )


def current_votes(session: Session, example_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Example id → {reviewer → value}: each reviewer's latest fresh vote."""
    result: dict[int, dict[str, str]] = defaultdict(dict)
    if not example_ids:
        return result
    rows = session.exec(
        select(Vote)
        .where(col(Vote.example_id).in_(example_ids), col(Vote.stale).is_(False))
        .order_by(col(Vote.id))
    ).all()
    for vote in rows:
        result[vote.example_id][vote.reviewer_id] = vote.value  # later votes overwrite earlier ones
    return result


def adjudicate(session: Session, project: Project, example_id: int, label: str, user_id: str) -> Example:
    """The final label of a conflicted example, as an owner decided it (who and when are recorded).
    Who may is `runner.core.policy`'s business.

    Raises:
        DatasetError: unknown example or label.
    """
    example = session.get(Example, example_id)
    if example is None or example.project_id != project.id or example.deleted_at is not None:
        raise DatasetError("That example is no longer in the dataset.")
    if label not in set(legend(project).values()):
        raise DatasetError(f"{label!r} is not one of this project's labels.")
    example.final_label = label
    example.decided_by = user_id
    example.decided_at = utcnow()
    session.add(example)
    return example


def claim_warning_change(session: Session, example_id: int, marked: bool) -> bool:
    """Flip the example's :warning: flag to `marked`; False when it already was (someone else did it).

    A compare-and-set, so that concurrent votes on one example add or remove the reaction once.
    """
    changed = session.execute(
        update(Example)
        .where(col(Example.id) == example_id, col(Example.warning_marked).is_(not marked))
        .values(warning_marked=marked)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]
