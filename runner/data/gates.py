"""A project's statistics and readiness gates, computed from the database.

The statistics (agreement, consensus, splits, duplicates) are pure functions in
`runner.data.agreement`, `runner.data.split` and `runner.data.textnorm`; this module reads the
examples and votes around them.

Consensus is a strict majority of at least two votes, or — when the project's owner turned reviewer
weighting on — the label the Dawid–Skene model (`runner.data.dawid_skene`) believes more likely than
not, still on at least two votes. Either way an owner's decision is final. The model is fitted over
all the project's votes (owners' decisions as known labels) and kept per process until a vote or a
decision of the project changes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project, TaskType, Vote
from runner.data import agreement, dawid_skene, split, textnorm
from runner.data.examples import adjudicate, current_votes
from runner.data.projects import ACCEPT, REJECT, labels_of

MIN_VOTES = 2
MIN_EVAL_PER_LABEL = 2
MAX_IMBALANCE = 5.0
MAX_DUPLICATE_SHARE = 0.1


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
    model = _reviewer_model(project, examples, votes)
    states = []
    for example in examples:
        assert example.id is not None
        mine = votes.get(example.id, {})
        decided = agreement.consensus(mine, min_votes=MIN_VOTES)
        if model is not None and decided.status != agreement.ConsensusStatus.PENDING:
            weighted = model.label(example.id)
            status = agreement.ConsensusStatus.AGREED if weighted else agreement.ConsensusStatus.CONFLICT
            decided = agreement.Consensus(status, weighted, decided.counts)
        label = example.final_label or decided.label
        states.append(ExampleState(example, mine, decided, label))
    return states


# project id → (what the fit was made from, the fit): refitted only when votes or decisions change.
_FITS: dict[int, tuple[int, dawid_skene.Fit]] = {}


def reviewer_model(session: Session, project: Project) -> dawid_skene.Fit | None:
    """The Dawid–Skene fit consensus uses for `project` (None: weighting is off)."""
    examples = live_examples(session, project)
    return _reviewer_model(
        project, examples, current_votes(session, [e.id for e in examples if e.id is not None])
    )


def _reviewer_model(
    project: Project, examples: list[Example], votes: dict[int, dict[str, str]]
) -> dawid_skene.Fit | None:
    if not project.weighted_consensus or project.id is None:
        return None
    units = {e.id: votes[e.id] for e in examples if e.id is not None and votes.get(e.id)}
    known = {e.id: e.final_label for e in examples if e.id in units and e.final_label}
    labels = (
        [lab.name for lab in labels_of(project)]
        if project.task_type == TaskType.CLASSIFICATION
        else [ACCEPT, REJECT]
    )
    fingerprint = hash(
        (
            tuple(sorted((i, r, v) for i, cast in units.items() for r, v in cast.items())),
            tuple(sorted(known.items())),
            tuple(labels),
        )
    )
    cached = _FITS.get(project.id)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    model = dawid_skene.fit(units, labels, known=known)
    _FITS[project.id] = (fingerprint, model)
    return model


def settle_conflict(session: Session, project: Project, example_id: int, label: str, user_id: str) -> Example:
    """An owner's final label for an example reviewers disagree on, only while they still do: a
    button on an old list must not re-decide an example settled since, or one whose votes now agree.

    Raises:
        DatasetError: the example is not (or no longer) in conflict, or the label is unknown.
    """
    example = session.get(Example, example_id)
    if example is None or example.project_id != project.id or example.deleted_at is not None:
        raise DatasetError("That example is no longer in the dataset.")
    if example.final_label is not None:
        who = example.decided_by or ""
        by = f" by <@{who}>" if re.fullmatch(r"[UW][A-Z0-9]+", who) else (f" by {who}" if who else "")
        raise DatasetError(f"That conflict is already settled: *{example.final_label}*{by}. Nothing changed.")
    state = next((s for s in example_states(session, project) if s.example.id == example_id), None)
    if state is None or state.consensus.status != agreement.ConsensusStatus.CONFLICT:
        raise DatasetError(
            "Reviewers no longer disagree on that example (its votes changed). Nothing changed."
        )
    return adjudicate(session, project, example_id, label, user_id)


def usable(state: ExampleState) -> bool:
    """Consensus reached (or decided by an owner) and, for target tasks, the target accepted."""
    if state.label is None:
        return False
    return state.example.target_text is None or state.label == ACCEPT


def training_label(project: Project, state: ExampleState) -> str:
    return state.label or "" if project.task_type == TaskType.CLASSIFICATION else ""


def project_stats(session: Session, project: Project) -> ProjectStats:
    """Counts, agreement and the readiness gates of `project`, computed from the database."""
    states = example_states(session, project)
    decided = [s for s in states if usable(s)]
    is_classification = project.task_type == TaskType.CLASSIFICATION
    counts: Counter[str] = Counter(s.label for s in decided if s.label)
    if is_classification:
        counts = Counter({lab.name: counts.get(lab.name, 0) for lab in labels_of(project)})
    conflicts = [
        s
        for s in states
        if s.example.final_label is None and s.consensus.status == agreement.ConsensusStatus.CONFLICT
    ]
    summary = agreement.agreement_summary({s.example.id: s.votes for s in states if s.example.id is not None})
    items = [
        split.SplitItem(s.example.id or 0, s.example.input_text, training_label(project, s)) for s in decided
    ]
    # The sides the next snapshot would give (pinned examples keep theirs); texts only earlier
    # snapshots still hold are left to the snapshot itself.
    pinned = {s.example.id or 0: s.example.split for s in decided if s.example.split is not None}
    placed = split.stable_splits(items, pinned, eval_fraction=project.eval_fraction).splits
    splits = split.split_report([i for i in items if i.id in placed], placed) if items else {}
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
    is_classification = project.task_type == TaskType.CLASSIFICATION
    counts = stats.counts if is_classification else {"accepted": sum(stats.counts.values())}
    fewest = min(counts.values()) if counts else 0
    coefficient = stats.agreement.coefficient
    # Labels that came with the data (imports) or from an owner have no reviewer votes to compare;
    # the gate then has nothing to measure and does not block, and says so.
    all_decided = (
        stats.total > 0 and all(s.example.final_label for s in stats.examples) and coefficient is None
    )
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
            if coefficient is None
            else f"{coefficient:.2f} ({stats.agreement.method})",
            f"≥ {project.agreement_threshold:.2f}",
            all_decided or (coefficient is not None and coefficient >= project.agreement_threshold),
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
