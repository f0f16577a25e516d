"""Dataset projects: examples from Slack threads, votes from reactions, gates, and snapshots.

The statistics (agreement, consensus, splits, duplicates) are pure functions in
`runner.agreement`, `runner.split` and `runner.textnorm`; this module reads and writes the
database around them. Slack is not imported here: listeners pass plain values in.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from runner import agreement, split, textnorm
from runner.exceptions import DatasetError, NotProjectOwner, ProjectNotFound
from runner.models import (
    Example,
    Project,
    ReviewerHint,
    Snapshot,
    SnapshotExample,
    TaskType,
    Vote,
    utcnow,
)

DEFAULT_EMOJI = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCEPT, REJECT = "accept", "reject"
ACCEPT_EMOJI, REJECT_EMOJI = "white_check_mark", "x"
WARNING_EMOJI = "warning"
TARGET_SEPARATOR = re.compile(r"^\s*---\s*$", re.MULTILINE)
# Past this many characters an example is kept but flagged: long inputs dominate a small model's
# context (and token budget) and are often pasted logs rather than the task's real inputs.
OVERLONG_CHARS = 4000
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
EMOJI = re.compile(r"^:?([a-z0-9_+'-]+):?$")
MAX_LABEL_CHARS = 64
MIN_VOTES = 2
MIN_EVAL_PER_LABEL = 2
MAX_IMBALANCE = 5.0
MAX_DUPLICATE_SHARE = 0.1


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
        if self.task_type == TaskType.CLASSIFICATION.value:
            try:
                if len(self.labels()) < 2:
                    found["labels"] = "Give at least two labels, one per line."
            except DatasetError as exc:
                found["labels"] = str(exc)
        if self.task_type == TaskType.EXTRACTION.value and not self.fields():
            found["fields"] = "Name the JSON fields to extract, one per line or comma-separated."
        if not self.reviewers and not self.reviewer_groups:
            found["reviewers"] = "Pick at least one reviewer or a user group."
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
            words = words[:-1]
        name = " ".join(words).lower()
        if len(name) > MAX_LABEL_CHARS:
            raise DatasetError(f"Keep labels to {MAX_LABEL_CHARS} characters: {name[:20]}… is longer.")
        parsed.append((name, emoji))
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


# --- projects ---------------------------------------------------------------------------------


def labels_of(project: Project) -> list[LabelSpec]:
    return [LabelSpec(**item) for item in json.loads(project.labels_json)]


def fields_of(project: Project) -> list[str]:
    return list(json.loads(project.fields_json))


def reviewers_of(project: Project) -> tuple[list[str], list[str]]:
    """(user ids, user group ids) allowed to vote."""
    return list(json.loads(project.reviewers_json)), list(json.loads(project.reviewer_groups_json))


def legend(project: Project) -> dict[str, str]:
    """Emoji name → vote value: label names for classification, accept/reject for target outputs."""
    if project.task_type == TaskType.CLASSIFICATION.value:
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
        task_type=spec.task_type,
        channel_id=channel_id,
        owner_id=owner_id,
        labels_json=json.dumps(
            [lab.__dict__ for lab in spec.labels()] if spec.task_type == "classification" else []
        ),
        fields_json=json.dumps(spec.fields() if spec.task_type == "extraction" else []),
        reviewers_json=json.dumps(sorted(set(spec.reviewers))),
        reviewer_groups_json=json.dumps(sorted(set(spec.reviewer_groups))),
        min_per_label=spec.min_per_label,
        agreement_threshold=spec.agreement_threshold,
        instructions=spec.instructions.strip(),
        interview_id=interview_id,
    )
    session.add(project)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise DatasetError(f"A project named {spec.name} already exists.") from exc
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


def is_owner(project: Project, user_id: str, admins: Iterable[str] = ()) -> bool:
    return user_id == project.owner_id or user_id in set(admins)


# --- examples ---------------------------------------------------------------------------------


def split_target(project: Project, text: str) -> tuple[str, str | None]:
    """Split a contribution into (input, target output) for tasks that have a target.

    Raises:
        DatasetError: the target is missing, or (extraction) not a JSON object with the fields.
    """
    if project.task_type == TaskType.CLASSIFICATION.value:
        return text.strip(), None
    parts = TARGET_SEPARATOR.split(text, maxsplit=1)
    if len(parts) < 2 or not parts[1].strip() or not parts[0].strip():
        raise DatasetError("Put the input first, then a line with only `---`, then the target output.")
    source, target = parts[0].strip(), textnorm.slack_to_plain(parts[1]).strip()
    if project.task_type == TaskType.EXTRACTION.value:
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
    expected = set(fields_of(project))
    missing, extra = expected - value.keys(), value.keys() - expected
    if missing or extra:
        raise DatasetError(
            "The target's fields must be "
            + ", ".join(sorted(expected))
            + (f"; missing {', '.join(sorted(missing))}" if missing else "")
            + (f"; unexpected {', '.join(sorted(extra))}" if extra else "")
        )


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
        if project.task_type != TaskType.CLASSIFICATION.value and not target.strip():
            raise DatasetError("The target output is empty.")
        if project.task_type == TaskType.EXTRACTION.value:
            check_extraction_target(project, target)
    plain = (textnorm.slack_to_plain(source_text) if normalise else source_text).strip()
    if not plain:
        raise DatasetError("The example is empty once formatting is removed.")
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
    session.add(example)
    try:
        session.commit()
    except IntegrityError:  # the same message delivered twice at once: the other insert won
        session.rollback()
        winner = find_example(session, project.id, channel_id, message_ts)
        assert winner is not None
        return winner, False
    return example, True


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


def example_at(session: Session, channel_id: str, message_ts: str) -> tuple[Project, Example] | None:
    """The live example posted as message `message_ts` in `channel_id`, with its project."""
    row = session.exec(
        select(Example, Project)
        .join(Project, col(Project.id) == col(Example.project_id))
        .where(
            Example.channel_id == channel_id,
            Example.message_ts == message_ts,
            col(Example.deleted_at).is_(None),
        )
    ).first()
    return (row[1], row[0]) if row else None


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
    example.raw_text = text
    example.input_text = textnorm.slack_to_plain(source_text).strip()
    example.target_text = target
    example.overlong = len(example.input_text) > OVERLONG_CHARS
    example.edited_at = utcnow()
    session.add(example)
    for vote in session.exec(select(Vote).where(Vote.example_id == example.id)).all():
        vote.stale = True
        session.add(vote)
    session.commit()
    return project, example


def delete_example(session: Session, channel_id: str, message_ts: str) -> tuple[Project, Example] | None:
    """The Slack message was deleted: the example leaves the dataset (kept, marked deleted)."""
    found = example_at(session, channel_id, message_ts)
    if found is None:
        return None
    project, example = found
    example.deleted_at = utcnow()
    session.add(example)
    session.commit()
    return project, example


# --- votes --------------------------------------------------------------------------------------


def add_vote(session: Session, example: Example, reviewer_id: str, value: str) -> bool:
    """Record a reviewer's vote; False when this exact vote is already recorded (a redelivery).

    A stale vote with the same value (cast before an edit) is refreshed instead.
    """
    existing = session.exec(
        select(Vote).where(
            Vote.example_id == example.id, Vote.reviewer_id == reviewer_id, Vote.value == value
        )
    ).first()
    if existing is not None:
        if not existing.stale:
            return False
        existing.stale = False
        existing.created_at = utcnow()
        session.add(existing)
        session.commit()
        return True
    assert example.id is not None
    session.add(Vote(example_id=example.id, reviewer_id=reviewer_id, value=value))
    try:
        session.commit()
    except IntegrityError:  # a concurrent delivery of the same reaction
        session.rollback()
        return False
    return True


def remove_vote(session: Session, example: Example, reviewer_id: str, value: str) -> bool:
    vote = session.exec(
        select(Vote).where(
            Vote.example_id == example.id, Vote.reviewer_id == reviewer_id, Vote.value == value
        )
    ).first()
    if vote is None:
        return False
    session.delete(vote)
    session.commit()
    return True


def hint_once(session: Session, project: Project, user_id: str) -> bool:
    """True the first time `user_id` (not a reviewer) reacts in `project`; False afterwards."""
    assert project.id is not None
    session.add(ReviewerHint(project_id=project.id, user_id=user_id))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


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


# --- statistics and gates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    name: str
    value: str
    threshold: str
    passed: bool
    advice: str


@dataclass
class ExampleState:
    example: Example
    votes: dict[str, str]
    consensus: agreement.Consensus
    label: str | None  # the final label (adjudicated) or the agreed one


@dataclass
class ProjectStats:
    project: Project
    examples: list[ExampleState]
    counts: dict[str, int]
    pending: int
    conflicts: list[ExampleState]
    rejected: int
    overlong: int
    stale_votes: int
    agreement: agreement.AgreementSummary
    duplicates: int
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return bool(self.gates) and all(g.passed for g in self.gates)

    @property
    def total(self) -> int:
        return len(self.examples)


def live_examples(session: Session, project: Project) -> list[Example]:
    return list(
        session.exec(
            select(Example)
            .where(Example.project_id == project.id, col(Example.deleted_at).is_(None))
            .order_by(col(Example.id))
        ).all()
    )


def example_states(session: Session, project: Project) -> list[ExampleState]:
    examples = live_examples(session, project)
    votes = current_votes(session, [e.id for e in examples if e.id is not None])
    states = []
    for example in examples:
        assert example.id is not None
        mine = votes.get(example.id, {})
        decided = agreement.consensus(mine, min_votes=MIN_VOTES)
        label = example.final_label or decided.label
        states.append(ExampleState(example, mine, decided, label))
    return states


def _usable(state: ExampleState) -> bool:
    """Consensus reached (or decided by an owner) and, for target tasks, the target accepted."""
    if state.label is None:
        return False
    return state.example.target_text is None or state.label == ACCEPT


def _training_label(project: Project, state: ExampleState) -> str:
    return state.label or "" if project.task_type == TaskType.CLASSIFICATION.value else ""


def project_stats(session: Session, project: Project) -> ProjectStats:
    """Counts, agreement and the readiness gates of `project`, computed from the database."""
    states = example_states(session, project)
    usable = [s for s in states if _usable(s)]
    is_classification = project.task_type == TaskType.CLASSIFICATION.value
    counts: Counter[str] = Counter(s.label for s in usable if s.label)
    if is_classification:
        counts = Counter({lab.name: counts.get(lab.name, 0) for lab in labels_of(project)})
    conflicts = [
        s
        for s in states
        if s.example.final_label is None and s.consensus.status == agreement.ConsensusStatus.CONFLICT
    ]
    summary = agreement.agreement_summary({s.example.id: s.votes for s in states if s.example.id is not None})
    items = [
        split.SplitItem(s.example.id or 0, s.example.input_text, _training_label(project, s)) for s in usable
    ]
    splits = split.split_report(items, split.assign_splits(items, project.eval_fraction)) if items else {}
    groups = textnorm.near_duplicate_groups([s.example.input_text for s in states])
    stats = ProjectStats(
        project=project,
        examples=states,
        counts=dict(counts),
        pending=sum(
            1 for s in states if s.label is None and s.consensus.status == agreement.ConsensusStatus.PENDING
        ),
        conflicts=conflicts,
        rejected=sum(1 for s in states if s.label == REJECT),
        overlong=sum(1 for s in states if s.example.overlong),
        stale_votes=session.exec(
            select(func.count())
            .select_from(Vote)
            .join(Example)
            .where(Example.project_id == project.id, col(Vote.stale).is_(True))
        ).one(),
        agreement=summary,
        duplicates=len(groups) - len(set(groups)),
        splits=splits,
    )
    stats.gates = compute_gates(stats)
    return stats


def compute_gates(stats: ProjectStats) -> list[Gate]:
    """The readiness gates: each with its value, threshold and what to do when it fails."""
    project = stats.project
    is_classification = project.task_type == TaskType.CLASSIFICATION.value
    counts = stats.counts if is_classification else {"accepted": sum(stats.counts.values())}
    fewest = min(counts.values()) if counts else 0
    kappa = stats.agreement.kappa
    # Labels that came with the data (imports) or from an owner have no reviewer votes to compare;
    # the gate then has nothing to measure and does not block, and says so.
    all_decided = stats.total > 0 and all(s.example.final_label for s in stats.examples) and kappa is None
    gates = [
        Gate(
            "Examples per label" if is_classification else "Accepted examples",
            f"{fewest} (fewest)" if is_classification else str(fewest),
            f"≥ {project.min_per_label}",
            fewest >= project.min_per_label,
            "Post more examples in the thread"
            + (
                f", especially {min(counts, key=lambda k: counts[k])}."
                if is_classification and counts
                else "."
            ),
        ),
        Gate(
            "Reviewer agreement",
            ("n/a: every label was imported or decided" if all_decided else "n/a")
            if kappa is None
            else f"{kappa:.2f} ({stats.agreement.method})",
            f"≥ {project.agreement_threshold:.2f}",
            all_decided or (kappa is not None and kappa >= project.agreement_threshold),
            "Have at least two reviewers label the same examples; agree a rubric where they differ.",
        ),
        Gate(
            "Open conflicts",
            str(len(stats.conflicts)),
            "0",
            not stats.conflicts,
            f"An owner settles them with `/finetune conflicts {project.name}`.",
        ),
        Gate(
            "Duplicates",
            f"{stats.duplicates} of {stats.total}",
            f"≤ {MAX_DUPLICATE_SHARE:.0%}",
            stats.duplicates <= MAX_DUPLICATE_SHARE * max(stats.total, 1),
            "Delete repeated examples; duplicates inflate counts and never straddle the split anyway.",
        ),
    ]
    held_out = {label: s.get("eval", 0) for label, s in stats.splits.items()}
    fewest_eval = min(held_out.values()) if held_out and is_classification else sum(held_out.values())
    if is_classification and set(held_out) != set(counts):
        fewest_eval = 0
    needed = MIN_EVAL_PER_LABEL if is_classification else MIN_EVAL_PER_LABEL * 3
    gates.append(
        Gate(
            "Held-out examples" + (" per label" if is_classification else ""),
            str(fewest_eval),
            f"≥ {needed}",
            fewest_eval >= needed,
            f"About {project.eval_fraction:.0%} of examples are held out; add examples until each label has"
            " enough.",
        )
    )
    if is_classification:
        largest = max(counts.values()) if counts else 0
        ratio = largest / fewest if fewest else float("inf")
        gates.append(
            Gate(
                "Label balance",
                "n/a"
                if not largest
                else (f"{ratio:.1f}× largest/smallest" if fewest else "a label has none"),
                f"≤ {MAX_IMBALANCE:.0f}×",
                bool(largest) and ratio <= MAX_IMBALANCE,
                "Collect more of the rare labels rather than dropping common ones.",
            )
        )
    return gates


# --- conflicts -------------------------------------------------------------------------------------


def adjudicate(
    session: Session, project: Project, example_id: int, label: str, user_id: str, admins: Iterable[str] = ()
) -> Example:
    """An owner's final label for a conflicted example (who and when are recorded).

    Raises:
        NotProjectOwner: `user_id` is neither the owner nor an admin.
        DatasetError: unknown example or label.
    """
    if not is_owner(project, user_id, admins):
        raise NotProjectOwner(f"Only the project owner <@{project.owner_id}> can settle conflicts.")
    example = session.get(Example, example_id)
    if example is None or example.project_id != project.id or example.deleted_at is not None:
        raise DatasetError("That example is no longer in the dataset.")
    if label not in set(legend(project).values()):
        raise DatasetError(f"{label!r} is not one of this project's labels.")
    example.final_label = label
    example.decided_by = user_id
    example.decided_at = utcnow()
    session.add(example)
    session.commit()
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
    session.commit()
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def project_channels(session: Session) -> set[str]:
    """Channels that hold a project thread (where a reaction may concern an example)."""
    return set(session.exec(select(Project.channel_id)).all())


# --- snapshots ---------------------------------------------------------------------------------


def build_snapshot(session: Session, project: Project, *, created_by: str = "") -> tuple[Snapshot, bool]:
    """Freeze the usable examples into an immutable, content-addressed snapshot.

    Each example's split comes from a hash of its normalised text (`runner.split`), so adding
    examples never moves an old one between train and eval. The same content gives the same id;
    taking a snapshot twice returns the existing one.

    Returns:
        (snapshot, created).

    Raises:
        DatasetError: there is no usable example yet.
    """
    stats = project_stats(session, project)
    usable = [s for s in stats.examples if _usable(s)]
    if not usable:
        raise DatasetError("No example has reached consensus yet: nothing to snapshot.")
    items = [
        split.SplitItem(s.example.id or 0, s.example.input_text, _training_label(project, s)) for s in usable
    ]
    assignment = split.assign_splits(items, project.eval_fraction)
    rows = [
        SnapshotExample(
            snapshot_id="",
            example_id=s.example.id or 0,
            split=assignment[s.example.id or 0].value,
            input_text=s.example.input_text,
            target=s.label if s.example.target_text is None else s.example.target_text,  # type: ignore[arg-type]
            label=_training_label(project, s),
        )
        for s in usable
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
        "splits": split.split_report([i for i, _ in addressed], {i.id: split.Split(s) for i, s in addressed}),
        "agreement": {
            "method": stats.agreement.method,
            "kappa": stats.agreement.kappa,
            "percent": stats.agreement.percent,
            "raters": stats.agreement.raters,
            "items_compared": stats.agreement.items_compared,
        },
        "legend": legend(project),
        "task_type": project.task_type,
        "instructions": project.instructions,
        "fields": fields_of(project),
    }
    snapshot = Snapshot(
        id=digest,
        project_id=project.id or 0,
        created_by=created_by,
        n_train=sum(1 for r in rows if r.split == split.Split.TRAIN.value),
        n_eval=sum(1 for r in rows if r.split == split.Split.EVAL.value),
        stats_json=json.dumps(stats_doc, sort_keys=True),
    )
    session.add(snapshot)
    for row in rows:
        row.snapshot_id = digest
        session.add(row)
    try:
        session.commit()
    except IntegrityError:  # taken concurrently by someone else: same content, same snapshot
        session.rollback()
        winner = session.get(Snapshot, digest)
        assert winner is not None
        return winner, False
    return snapshot, True


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


def snapshot_stats(snapshot: Snapshot) -> dict[str, Any]:
    return dict(json.loads(snapshot.stats_json))
