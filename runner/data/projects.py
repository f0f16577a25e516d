"""Dataset projects: their task, label legend and reviewers.

A project is created from the Slack modal (or ``ftbot project create``); its thread in Slack is where
examples are posted and labeled. Slack is not imported here: listeners pass plain values in. Like
every service, these functions take the caller's session and never commit.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from runner.core.exceptions import DatasetError, ProjectNotFound
from runner.core.models import Project, TaskType

DEFAULT_EMOJI = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCEPT, REJECT = "accept", "reject"
ACCEPT_EMOJI, REJECT_EMOJI = "white_check_mark", "x"
WARNING_EMOJI = "warning"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
EMOJI = re.compile(r"^:?([a-z0-9_+'-]+):?$")
# Limits that keep every message about a project within Slack's Block Kit limits (checked in
# tests/test_templates.py with the largest project these allow):
MAX_LABEL_CHARS = 64  # a label shows on a settle button or menu option (75 characters with its emoji)
MAX_EMOJI_CHARS = 40  # custom emoji names are rarely longer; the legend lists every one
MAX_LABELS = 50  # a select menu holds 100 options; more labels than this hurt agreement anyway
MAX_REVIEWERS = 100  # users and user groups together (a group counts once, however large)


@dataclass(frozen=True)
class LabelSpec:
    name: str
    emoji: str


@dataclass
class ProjectSpec:
    """What the project modal (or a test) asks for; `problems()` says what is wrong, by field."""

    name: str
    task_type: str
    label_lines: str = ""
    field_names: str = ""
    reviewers: Sequence[str] = ()
    reviewer_groups: Sequence[str] = ()
    min_per_label: int = 10
    agreement_threshold: float = 0.6
    instructions: str = ""

    def labels(self) -> list[LabelSpec]:
        return parse_labels(self.label_lines)

    def fields(self) -> list[str]:
        return [f.strip() for f in re.split(r"[,\n]", self.field_names) if f.strip()]

    def problems(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if not NAME.match(self.name):
            found["name"] = "Use 2–63 lowercase letters, digits, '-' or '_' (e.g. ticket-router)."
        if self.task_type not in {t.value for t in TaskType}:
            found["task_type"] = "Choose classification, extraction or generation."
        if self.task_type == TaskType.CLASSIFICATION:
            try:
                if len(self.labels()) < 2:
                    found["labels"] = "Give at least two labels, one per line."
            except DatasetError as exc:
                found["labels"] = str(exc)
        if self.task_type == TaskType.EXTRACTION and not self.fields():
            found["fields"] = "Name the JSON fields to extract, one per line or comma-separated."
        if not self.reviewers and not self.reviewer_groups:
            found["reviewers"] = "Pick at least one reviewer or a user group."
        elif len(set(self.reviewers)) + len(set(self.reviewer_groups)) > MAX_REVIEWERS:
            found["reviewers"] = (
                f"Up to {MAX_REVIEWERS} reviewers and user groups together; a user group counts once."
            )
        if not 1 <= self.min_per_label <= 100_000:
            found["min_per_label"] = "Use a number from 1 up."
        if not 0 < self.agreement_threshold <= 1:
            found["agreement_threshold"] = "Use a number between 0 and 1, e.g. 0.6."
        return found


def parse_labels(text: str) -> list[LabelSpec]:
    """Labels one per line, optionally with an emoji (``billing :moneybag:``); others get :one:…:nine:.

    Raises:
        DatasetError: duplicate names or emoji, a bad emoji, or more than nine labels without emoji.
    """
    parsed: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        words = line.strip().split()
        if not words:
            continue
        emoji = None
        if len(words) > 1 and words[-1].startswith(":"):
            match = EMOJI.match(words[-1])
            if not match:
                raise DatasetError(f"{words[-1]} is not an emoji name like :moneybag:")
            emoji = match.group(1)
            if len(emoji) > MAX_EMOJI_CHARS:
                raise DatasetError(
                    f"Keep emoji names to {MAX_EMOJI_CHARS} characters: :{emoji[:20]}…: is longer."
                )
            words = words[:-1]
        name = " ".join(words).lower()
        if len(name) > MAX_LABEL_CHARS:
            raise DatasetError(f"Keep labels to {MAX_LABEL_CHARS} characters: {name[:20]}… is longer.")
        parsed.append((name, emoji))
    if len(parsed) > MAX_LABELS:
        raise DatasetError(f"Up to {MAX_LABELS} labels, one per line; {len(parsed)} were given.")
    free = iter(e for e in DEFAULT_EMOJI if e not in {emoji for _, emoji in parsed})
    labels = []
    for name, emoji in parsed:
        if emoji is None:
            emoji = next(free, None)
            if emoji is None:
                raise DatasetError("More than nine labels need an emoji each, e.g. `billing :moneybag:`.")
        labels.append(LabelSpec(name, emoji))
    for what, values in (("label", [lab.name for lab in labels]), ("emoji", [lab.emoji for lab in labels])):
        repeated = sorted(v for v, n in Counter(values).items() if n > 1)
        if repeated:
            raise DatasetError(f"Each {what} may appear once; repeated: {', '.join(repeated)}.")
    if {ACCEPT_EMOJI, REJECT_EMOJI, WARNING_EMOJI} & {lab.emoji for lab in labels}:
        raise DatasetError("White_check_mark, x and warning are reserved for accept, reject and conflicts.")
    return labels


def labels_of(project: Project) -> list[LabelSpec]:
    return [LabelSpec(**item) for item in project.labels]


def legend(project: Project) -> dict[str, str]:
    """Emoji name → vote value: label names for classification, accept/reject for target outputs."""
    if project.task_type == TaskType.CLASSIFICATION:
        return {lab.emoji: lab.name for lab in labels_of(project)}
    return {ACCEPT_EMOJI: ACCEPT, REJECT_EMOJI: REJECT}


def create_project(
    session: Session, spec: ProjectSpec, *, owner_id: str, channel_id: str, interview_id: int | None = None
) -> Project:
    """Create a project from a validated spec.

    Raises:
        DatasetError: the spec has problems (the message lists them) or the name is taken.
    """
    problems = spec.problems()
    if problems:
        raise DatasetError("; ".join(f"{k}: {v}" for k, v in problems.items()))
    project = Project(
        name=spec.name,
        task_type=TaskType(spec.task_type),
        channel_id=channel_id,
        owner_id=owner_id,
        labels=[lab.__dict__ for lab in spec.labels()] if spec.task_type == TaskType.CLASSIFICATION else [],
        fields=spec.fields() if spec.task_type == TaskType.EXTRACTION else [],
        reviewers=sorted(set(spec.reviewers)),
        reviewer_groups=sorted(set(spec.reviewer_groups)),
        min_per_label=spec.min_per_label,
        agreement_threshold=spec.agreement_threshold,
        instructions=spec.instructions.strip(),
        interview_id=interview_id,
    )
    taken = DatasetError(f"A project named {spec.name} already exists.")
    if session.exec(select(Project.id).where(Project.name == spec.name)).first() is not None:
        raise taken
    session.add(project)
    try:
        session.flush()  # the unique name is the last word on a concurrent create
    except IntegrityError as exc:
        raise taken from exc
    return project


def get_project(session: Session, name: str) -> Project:
    """The project called `name`.

    Raises:
        ProjectNotFound: with the names that do exist.
    """
    project = session.exec(select(Project).where(Project.name == name.strip().lower())).first()
    if project is None:
        names = ", ".join(p.name for p in session.exec(select(Project).order_by(col(Project.name))).all())
        raise ProjectNotFound(f"No project named {name!r}." + (f" Projects: {names}." if names else ""))
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.exec(select(Project).order_by(col(Project.name))).all())


def project_for_thread(session: Session, channel_id: str, thread_ts: str) -> Project | None:
    return session.exec(
        select(Project).where(Project.channel_id == channel_id, Project.root_ts == thread_ts)
    ).first()


def project_channels(session: Session) -> set[str]:
    """Channels that hold a project thread (where a reaction may concern an example)."""
    return set(session.exec(select(Project.channel_id)).all())


def legend_emoji_in_channel(session: Session, channel_id: str) -> set[str]:
    """Every emoji that is a vote in some project whose thread is in `channel_id` (empty: none is)."""
    found: set[str] = set()
    for project in session.exec(select(Project).where(Project.channel_id == channel_id)).all():
        found |= legend(project).keys()
    return found


def mark_tally(session: Session, project_id: int, *, dirty: bool) -> None:
    """Record whether Slack's tally and marks of the project may be behind its data."""
    project = session.get(Project, project_id)
    if project is not None and project.tally_dirty != dirty:
        project.tally_dirty = dirty
        session.add(project)


def dirty_tallies(session: Session) -> list[int]:
    """Projects whose tally or marks a refresh has not brought in line yet (their root is posted)."""
    rows = session.exec(
        select(Project.id).where(col(Project.tally_dirty).is_(True), col(Project.root_ts).is_not(None))
    ).all()
    return [project_id for project_id in rows if project_id is not None]
