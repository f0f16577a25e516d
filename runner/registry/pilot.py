"""Pilot mode: production answers real messages in a channel, reviewers' reactions judge it.

While a project's pilot is on, every new top-level message in its channel is asked of the version in
production (`runner.registry.predictions`); the suggestion is posted in the message's thread.
Reviewers react on the suggestion: ✅ accepts it, a label's emoji (classification) or ❌ (drafts)
corrects it. Each reaction is a vote on an example made from the message — ``source="pilot"``, linked
from its prediction, which holds the version and whether it was accepted or corrected — so it flows
through the same consensus, split and gate rules as every other example. Removing a reaction
retracts the vote; a redelivered one counts once (the vote's unique key).

A reviewer can also correct a suggestion in words: ❌ on it and a reply in the thread with the right
output (`Correction`). The reply counts while the ❌ stands and only then: for classification it is a
vote for the label it names on the message's example; for drafts it becomes an example of its own (the
message as input, the reply as target, like a reply added with the shortcut) with the reviewer's
accept, which other reviewers confirm or reject by reacting on the reply. Taking the ❌ back (or
deleting the reply) retracts it; a later reply replaces an earlier one.

A suggestion's outcome follows its current votes: the label a strict majority of them names (one
vote is enough here) is accepted when it is the suggestion's, corrected otherwise; a tie leaves it
out of the acceptance rate. The rate of the version in production is tested after every review
(`runner.data.acceptance.cusum`); a drop raises one alert per production move, resolved once
production moves off that version.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from runner.core.config import Settings
from runner.core.db import insert_ignore
from runner.core.exceptions import DatasetError
from runner.core.models import (
    AlertKind,
    AlertStatus,
    Correction,
    DriftAlert,
    Example,
    ModelVersion,
    Pilot,
    Prediction,
    PredictionStatus,
    Project,
    ReviewOutcome,
    SnapshotExample,
    Split,
    TaskType,
    Vote,
    utcnow,
)
from runner.data import acceptance, agreement, examples, textnorm
from runner.data.examples import current_votes
from runner.data.projects import ACCEPT, ACCEPT_EMOJI, labels_of, legend
from runner.registry import predictions, versions

RECENT_SHOWN = 20  # reviews listed in an alert


# --- turning it on and off ----------------------------------------------------------------------


def set_pilot(session: Session, project: Project, *, enabled: bool, channel_id: str | None, by: str) -> Pilot:
    """Turn `project`'s pilot on (in `channel_id`, else where it was, else the project's channel) or off.

    Raises:
        DatasetError: on, with nothing in production to answer.
    """
    assert project.id is not None
    if enabled and versions.production(session, project) is None:
        raise DatasetError(f"Nothing of *{project.name}* is in production yet: promote a version first.")
    pilot = session.get(Pilot, project.id)
    if pilot is None:
        pilot = Pilot(project_id=project.id, channel_id=channel_id or project.channel_id)
    elif channel_id:
        pilot.channel_id = channel_id
    pilot.enabled, pilot.by, pilot.updated_at = enabled, by, utcnow()
    session.add(pilot)
    return pilot


def pilots_in(session: Session, channel_id: str) -> list[Project]:
    """Projects piloting in `channel_id` now."""
    return list(
        session.exec(
            select(Project)
            .join(Pilot, col(Pilot.project_id) == col(Project.id))
            .where(Pilot.channel_id == channel_id, col(Pilot.enabled).is_(True))
            .order_by(col(Project.id))
        ).all()
    )


def pilot_of(session: Session, project: Project) -> Pilot | None:
    return session.get(Pilot, project.id)


def ask_for_message(
    session: Session, channel_id: str, message_ts: str, author_id: str, text: str
) -> list[int]:
    """A new top-level message in a pilot channel: a prediction per project piloting there (by its
    version in production). Returns the ids of predictions created (a redelivery creates none)."""
    created = []
    for project in pilots_in(session, channel_id):
        serving = versions.production(session, project)
        if serving is None:
            continue
        prediction, new = predictions.ask(
            session, project, serving, text, channel_id=channel_id, message_ts=message_ts, author_id=author_id
        )
        if new and prediction.id is not None:
            created.append(prediction.id)
        piloted = pilot_of(session, project)
        candidate = (
            session.get(ModelVersion, piloted.shadow_version_id)
            if piloted and piloted.shadow_version_id
            else None
        )
        if candidate is not None and candidate.id != serving.id:
            shadowed, new = predictions.ask(
                session,
                project,
                candidate,
                text,
                channel_id=channel_id,
                message_ts=message_ts,
                author_id=author_id,
                shadow=True,
            )
            if new and shadowed.id is not None:
                created.append(shadowed.id)
    return created


# --- reviews ---------------------------------------------------------------------------------------


def review_target(session: Session, channel_id: str, ts: str) -> tuple[Project, Prediction] | None:
    """The suggestion posted as message `ts` in `channel_id`, with its project."""
    prediction = session.exec(
        select(Prediction).where(Prediction.channel_id == channel_id, Prediction.suggestion_ts == ts)
    ).first()
    if prediction is None:
        return None
    project = session.get(Project, prediction.project_id)
    assert project is not None
    return project, prediction


def accepted_value(project: Project, prediction: Prediction) -> str | None:
    """The vote that says "the suggestion is right": its label, or accept for a draft."""
    if project.task_type == TaskType.CLASSIFICATION:
        return prediction.label
    return ACCEPT


def vote_value(project: Project, prediction: Prediction, emoji: str) -> str | None:
    """What a reaction on a suggestion votes for (None: the reaction is not a review)."""
    if emoji == ACCEPT_EMOJI:
        return accepted_value(project, prediction)
    return legend(project).get(emoji)


def review(
    session: Session, project: Project, prediction: Prediction, reviewer: str, value: str, *, added: bool
) -> bool:
    """Record (or retract) a reviewer's vote on a suggestion; True when something changed.

    The first review makes the example (the message's text; for drafts, the draft as its target);
    the prediction's outcome is then recomputed from the example's current votes.
    """
    example_id = prediction.example_id
    if example_id is None:
        example_id = _example_for(session, project, prediction) if added else None
        if example_id is None:
            return False
        prediction.example_id = example_id
    changed = (examples.add_vote if added else examples.remove_vote)(session, example_id, reviewer, value)
    _refresh_outcome(session, project, prediction)
    return changed


def _refresh_outcome(session: Session, project: Project, prediction: Prediction) -> None:
    """The suggestion's outcome, from the current votes on its example."""
    if prediction.example_id is None:
        return
    votes = current_votes(session, [prediction.example_id]).get(prediction.example_id, {})
    prediction.outcome = outcome_of(project, prediction, votes)
    session.add(prediction)


def _example_for(session: Session, project: Project, prediction: Prediction) -> int | None:
    """The example a reviewed suggestion becomes (None: a draft that cannot be a target of the task,
    such as extraction output that is not the project's JSON; its reviews are not counted)."""
    draft = None if project.task_type == TaskType.CLASSIFICATION else (prediction.output_text or "")
    try:
        example, _ = examples.add_example(
            session,
            project,
            channel_id=prediction.channel_id,
            message_ts=prediction.message_ts,
            author_id=prediction.author_id,
            text=prediction.input_text,
            target=draft,
            source="pilot",
            normalise=False,
        )
    except DatasetError:
        return None
    assert example.id is not None
    return example.id


def outcome_of(project: Project, prediction: Prediction, votes: dict[str, str]) -> ReviewOutcome | None:
    """Accepted or corrected, from the reviewers' current votes (None: unreviewed, or a tie)."""
    if not votes:
        return None
    decided = agreement.consensus(votes, min_votes=1)
    if decided.label is None:
        return None
    right = accepted_value(project, prediction)
    return ReviewOutcome.ACCEPTED if right is not None and decided.label == right else ReviewOutcome.CORRECTED


# --- corrections: ❌ on a suggestion and a reply in its thread ------------------------------------

CODE_FENCE = re.compile(r"^```[a-z]*\n?(.*?)\n?```$", re.DOTALL)
EMOJI_REPLY = re.compile(r"^:([a-z0-9_+'-]+):(?::skin-tone-\d:)?$")


@dataclass(frozen=True)
class Corrected:
    """What a ❌ or a reply in a pilot thread came to."""

    changed: bool = False  # the votes changed
    tell: str | None = None  # what to tell the reviewer, in the thread, where only they see it


def suggestions_in_thread(
    session: Session, channel_id: str, thread_ts: str
) -> list[tuple[Project, Prediction]]:
    """The suggestions of pilot message `thread_ts` (one per project piloting in the channel), which a
    reply in its thread may correct."""
    rows = session.exec(
        select(Prediction, Project)
        .join(Project, col(Project.id) == col(Prediction.project_id))
        .where(
            Prediction.channel_id == channel_id,
            Prediction.message_ts == thread_ts,
            col(Prediction.shadow).is_(False),
        )
        .order_by(col(Prediction.id))
    ).all()
    return [(project, prediction) for prediction, project in rows]


def what_to_reply(project: Project) -> str:
    if project.task_type == TaskType.CLASSIFICATION:
        return (
            "the right label (" + ", ".join(f":{lab.emoji}: {lab.name}" for lab in labels_of(project)) + ")"
        )
    if project.task_type == TaskType.EXTRACTION:
        return "the right JSON object (fields " + ", ".join(project.fields) + ")"
    return "the right output"


def correction_value(project: Project, text: str) -> str:
    """What a reply (plain text) says the right output is: one of the project's labels, named in any
    case or by its emoji, or the corrected draft (a code block's content for extraction's JSON).

    Raises:
        DatasetError: the reply does not fit the task; the message says what would.
    """
    said = text.strip()
    if project.task_type == TaskType.CLASSIFICATION:
        word = said.strip("*_~`.!?\"' ").lower()
        names = {lab.name.lower(): lab.name for lab in labels_of(project)}
        emoji = EMOJI_REPLY.match(word)
        label = names.get(word) or (legend(project).get(emoji.group(1)) if emoji else None)
        if label is None:
            shown = said if len(said) <= 60 else said[:59] + "…"
            raise DatasetError(
                f"“{shown}” is not a label of *{project.name}*: reply with {what_to_reply(project)}."
            )
        return label
    fenced = CODE_FENCE.match(said)
    draft = (fenced.group(1) if fenced else said).strip()
    if not draft or not textnorm.has_visible(draft):
        raise DatasetError(f"The reply shows nothing: reply with {what_to_reply(project)}.")
    if project.task_type == TaskType.EXTRACTION:
        try:
            examples.check_extraction_target(project, draft)
        except DatasetError as exc:
            raise DatasetError(f"{exc} Reply with {what_to_reply(project)}.") from exc
    return draft


def _ts(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        return Decimal(0)


def _correction(session: Session, prediction: Prediction, reviewer: str) -> Correction:
    """The reviewer's correction row of a suggestion, made if need be and locked for this unit of work
    (a ❌ and a reply handled at once must see each other)."""
    assert prediction.id is not None
    insert_ignore(
        session,
        Correction(prediction_id=prediction.id, reviewer_id=reviewer),
        conflict=("prediction_id", "reviewer_id"),
    )
    return session.exec(
        select(Correction)
        .where(Correction.prediction_id == prediction.id, Correction.reviewer_id == reviewer)
        .with_for_update()
    ).one()


def reject(
    session: Session, project: Project, prediction: Prediction, reviewer: str, *, added: bool
) -> Corrected:
    """A reviewer's ❌ on a suggestion (`added`), or its removal: their reply counts while it stands.
    (For drafts the ❌ is also a reject vote on the draft: `review` records that.)"""
    row = _correction(session, prediction, reviewer)
    newly = added and not row.rejected
    row.rejected, row.updated_at = added, utcnow()
    session.add(row)
    changed = _sync(session, project, prediction, row)
    tell = None
    if newly and row.value is None:
        tell = (
            f"Noted: reply in this thread with {what_to_reply(project)}, and your reply becomes the "
            "correction of this suggestion."
        )
    return Corrected(changed, tell)


def reply(
    session: Session, project: Project, prediction: Prediction, reviewer: str, reply_ts: str, text: str
) -> Corrected:
    """A reviewer's reply (or an edit of one) in the thread of a pilot message: their correction when
    it fits the task and is their latest; counted while their ❌ is on the suggestion."""
    row = session.exec(
        select(Correction).where(
            Correction.prediction_id == prediction.id, Correction.reviewer_id == reviewer
        )
    ).first()
    if row is not None and row.reply_ts and _ts(reply_ts) < _ts(row.reply_ts):
        return Corrected()  # an earlier reply edited: the latest one stands
    rejected = row is not None and row.rejected
    try:
        value = correction_value(project, text)
    except DatasetError as exc:
        # Chatter in the thread is none of ftbot's business; a reply after a ❌ is meant as the correction.
        return Corrected(tell=f"{exc} Nothing was counted from that reply." if rejected else None)
    row = _correction(session, prediction, reviewer)
    row.reply_ts, row.value, row.updated_at = reply_ts, value, utcnow()
    session.add(row)
    changed = _sync(session, project, prediction, row)
    tell = None
    if not row.rejected and project.task_type == TaskType.CLASSIFICATION and value != prediction.label:
        tell = f"To correct this suggestion to *{value}*, react :x: on it."
    return Corrected(changed, tell)


def reply_deleted(session: Session, channel_id: str, reply_ts: str) -> list[int]:
    """A reply was deleted: a correction it made is retracted. Returns the projects whose votes changed."""
    rows = session.exec(
        select(Correction, Prediction)
        .join(Prediction, col(Prediction.id) == col(Correction.prediction_id))
        .where(Prediction.channel_id == channel_id, Correction.reply_ts == reply_ts)
    ).all()
    changed = []
    for row, prediction in rows:
        project = session.get(Project, prediction.project_id)
        assert project is not None
        row.reply_ts, row.value, row.updated_at = None, None, utcnow()
        session.add(row)
        if _sync(session, project, prediction, row):
            changed.append(project.id or 0)
    return changed


def _sync(session: Session, project: Project, prediction: Prediction, row: Correction) -> bool:
    """Make what is counted of a correction what its row says: the reply's value while the ❌ stands
    (see the module docstring). True when votes changed."""
    wanted = row.value if row.rejected and row.value is not None else None
    if project.task_type == TaskType.CLASSIFICATION:
        return _sync_label(session, project, prediction, row, wanted)
    return _sync_draft(session, project, prediction, row, wanted)


def _sync_label(
    session: Session, project: Project, prediction: Prediction, row: Correction, wanted: str | None
) -> bool:
    if wanted == row.applied:
        return False
    changed = False
    if row.applied is not None and prediction.example_id is not None:
        changed = examples.remove_vote(session, prediction.example_id, row.reviewer_id, row.applied)
    row.applied = None
    if wanted is not None:
        if prediction.example_id is None:
            prediction.example_id = _example_for(session, project, prediction)
        if prediction.example_id is not None:
            changed = examples.add_vote(session, prediction.example_id, row.reviewer_id, wanted) or changed
            row.applied = wanted
    session.add(row)
    _refresh_outcome(session, project, prediction)
    return changed


def _sync_draft(
    session: Session, project: Project, prediction: Prediction, row: Correction, wanted: str | None
) -> bool:
    current = session.get(Example, row.example_id) if row.example_id is not None else None
    at = row.reply_ts if wanted is not None else None
    if wanted == row.applied and (current.message_ts if current else None) == at:
        return False
    if current is not None and current.message_ts != at:  # retracted, or replaced by a later reply
        examples.remove_vote(session, current.id or 0, row.reviewer_id, ACCEPT)
        current.deleted_at = utcnow()
        session.add(current)
        row.example_id = None
    row.applied = None
    if wanted is not None and row.reply_ts is not None:
        corrected = _corrected_example(session, project, prediction, row.reviewer_id, row.reply_ts, wanted)
        examples.add_vote(session, corrected.id or 0, row.reviewer_id, ACCEPT)
        row.example_id, row.applied = corrected.id, wanted
    session.add(row)
    return True


def _corrected_example(
    session: Session, project: Project, prediction: Prediction, reviewer: str, reply_ts: str, output: str
) -> Example:
    """The example a draft's correction becomes: the pilot message as input, the reply as target, at
    the reply (so that reviewers' reactions on the reply are votes on it)."""
    found = examples.find_example(session, project.id, prediction.channel_id, reply_ts)
    if found is None:
        example, _ = examples.add_example(
            session,
            project,
            channel_id=prediction.channel_id,
            message_ts=reply_ts,
            author_id=reviewer,
            text=prediction.input_text,
            target=output,
            source="pilot",
            normalise=False,
        )
        return example
    if found.target_text != output:  # the reply was edited: earlier votes on it are stale
        found.target_text, found.edited_at = output, utcnow()
        session.execute(update(Vote).where(col(Vote.example_id) == found.id).values(stale=True))
    found.deleted_at = None
    session.add(found)
    return found


# --- acceptance and drift ------------------------------------------------------------------------------


def outcomes(session: Session, version: ModelVersion) -> list[bool]:
    """Accepted (True) / corrected (False) for each reviewed suggestion of `version`, oldest first
    (suggestions on messages since deleted are left out)."""
    rows = session.exec(
        select(Prediction.outcome)
        .join(Example, col(Example.id) == col(Prediction.example_id))
        .where(
            Prediction.version_id == version.id,
            col(Prediction.shadow).is_(False),
            col(Prediction.outcome).is_not(None),
            col(Example.deleted_at).is_(None),
        )
        .order_by(col(Prediction.id))
    ).all()
    return [outcome == ReviewOutcome.ACCEPTED for outcome in rows]


def offline_accuracy(version: ModelVersion) -> float | None:
    """The headline of the version's evaluation on held-out data (None: not evaluated)."""
    report = version.evaluation or {}
    candidate = report.get("candidate") or (report.get("systems") or {}).get("candidate") or {}
    headline = candidate.get("headline")
    return float(headline) if isinstance(headline, int | float) else None


@dataclass(frozen=True)
class VersionAcceptance:
    """A version's live acceptance beside its offline accuracy."""

    version: int
    rate: acceptance.Rate
    offline: float | None
    suggested: int  # suggestions answered (reviewed or not)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.rate.interval
        return {
            "version": self.version,
            "reviewed": self.rate.reviewed,
            "accepted": self.rate.accepted,
            "rate": self.rate.rate,
            "ci_low": low,
            "ci_high": high,
            "offline": self.offline,
            "suggested": self.suggested,
        }


def version_acceptance(session: Session, version: ModelVersion) -> VersionAcceptance:
    suggested = len(
        session.exec(
            select(Prediction.id).where(
                Prediction.version_id == version.id,
                Prediction.status == PredictionStatus.DONE,
                Prediction.channel_id != "",
                col(Prediction.shadow).is_(False),
            )
        ).all()
    )
    return VersionAcceptance(
        version.number, acceptance.rate_of(outcomes(session, version)), offline_accuracy(version), suggested
    )


def project_acceptance(session: Session, project: Project) -> list[VersionAcceptance]:
    """Every version that made pilot suggestions, newest first."""
    piloted = set(
        session.exec(
            select(Prediction.version_id).where(
                Prediction.project_id == project.id,
                Prediction.channel_id != "",
                col(Prediction.shadow).is_(False),
            )
        ).all()
    )
    return [
        version_acceptance(session, v)
        for v in reversed(versions.versions(session, project))
        if v.id in piloted
    ]


def drift_evidence(
    session: Session, settings: Settings, project: Project
) -> tuple[ModelVersion, dict[str, Any]] | None:
    """The test on the version in production: ``(version, evidence)`` when it alarms, else None."""
    serving = versions.production(session, project)
    if serving is None:
        return None
    seen = outcomes(session, serving)
    offline = offline_accuracy(serving)
    p0, p1 = acceptance.baseline(offline)
    test = acceptance.cusum(seen, p0=p0, p1=p1, min_reviews=settings.ftbot_drift_min_reviews)
    if not test.alarm:
        return None
    rate = acceptance.rate_of(seen)
    low, high = rate.interval
    previous = versions.previous_production(session, project)
    evidence: dict[str, Any] = {
        "reviewed": rate.reviewed,
        "accepted": rate.accepted,
        "rate": rate.rate,
        "ci_low": low,
        "ci_high": high,
        "baseline": offline,
        "p0": test.p0,
        "p1": test.p1,
        "statistic": test.peak,
        "threshold": test.threshold,
        "min_reviews": test.min_reviews,
        "alarm_at": test.alarm_at,
        "recent": seen[-RECENT_SHOWN:],
        "series": [int(ok) for ok in seen],  # every review, oldest first: the alert's chart
        "previous": version_acceptance(session, previous).to_dict() if previous is not None else None,
    }
    return serving, evidence


def raise_alert(session: Session, settings: Settings, project: Project) -> DriftAlert | None:
    """An alert for the version in production if its acceptance dropped and none was raised since
    it was put there; the new alert (to be posted), or None."""
    found = drift_evidence(session, settings, project)
    if found is None:
        return None
    serving, evidence = found
    return _new_alert(session, project, serving, AlertKind.ACCEPTANCE, evidence)


def _new_alert(
    session: Session, project: Project, serving: ModelVersion, kind: AlertKind, evidence: dict[str, Any]
) -> DriftAlert | None:
    """Record an alert of `kind` on `serving` unless one was raised since the last production move."""
    assert project.id is not None and serving.id is not None
    revision = versions.alias(session, project).revision
    piloted = pilot_of(session, project)
    alert = DriftAlert(
        project_id=project.id,
        version_id=serving.id,
        kind=kind,
        evidence=evidence,
        channel_id=piloted.channel_id if piloted is not None else project.channel_id,
        revision=revision,
    )
    if not insert_ignore(session, alert, conflict=("project_id", "version_id", "revision", "kind")):
        return None
    return session.exec(
        select(DriftAlert).where(
            DriftAlert.project_id == project.id,
            DriftAlert.version_id == serving.id,
            DriftAlert.revision == revision,
            DriftAlert.kind == kind,
        )
    ).one()


def training_mix(session: Session, version: ModelVersion) -> dict[str, int]:
    """Label counts of the examples `version` was trained on (its snapshot's train side)."""
    rows = session.exec(
        select(SnapshotExample.label).where(
            SnapshotExample.snapshot_id == version.snapshot_id, SnapshotExample.split == Split.TRAIN
        )
    ).all()
    return dict(Counter(label for label in rows if label))


def predicted_mix(session: Session, version: ModelVersion) -> dict[str, int]:
    """Label counts of `version`'s pilot suggestions (answers naming no label left out)."""
    rows = session.exec(
        select(Prediction.label).where(
            Prediction.version_id == version.id,
            Prediction.status == PredictionStatus.DONE,
            Prediction.channel_id != "",
            col(Prediction.shadow).is_(False),
            col(Prediction.label).is_not(None),
        )
    ).all()
    return dict(Counter(label for label in rows if label))


def raise_label_shift_alert(session: Session, settings: Settings, project: Project) -> DriftAlert | None:
    """An alert when the labels production predicts on pilot messages are mixed unlike its training
    data (total variation ≥ `acceptance.LABEL_SHIFT_TVD` over ``FTBOT_LABEL_SHIFT_MIN`` suggestions
    at least); the new alert, or None."""
    serving = versions.production(session, project)
    if serving is None or project.task_type != TaskType.CLASSIFICATION:
        return None
    predicted, trained = predicted_mix(session, serving), training_mix(session, serving)
    n = sum(predicted.values())
    if not trained or n < settings.ftbot_label_shift_min:
        return None
    distance = acceptance.total_variation(predicted, trained)
    if distance < acceptance.LABEL_SHIFT_TVD:
        return None
    evidence = {
        "predicted": n,
        "distance": distance,
        "threshold": acceptance.LABEL_SHIFT_TVD,
        "predicted_mix": acceptance.shares(predicted),
        "training_mix": acceptance.shares(trained),
    }
    return _new_alert(session, project, serving, AlertKind.LABEL_MIX, evidence)


def resolve_alerts(session: Session, project: Project, resolution: str) -> list[DriftAlert]:
    """Resolve the open alerts on versions no longer in production (after a rollback or a promote)."""
    serving = versions.production(session, project)
    open_alerts = session.exec(
        select(DriftAlert).where(DriftAlert.project_id == project.id, DriftAlert.status == AlertStatus.OPEN)
    ).all()
    resolved = []
    for alert in open_alerts:
        if serving is not None and alert.version_id == serving.id:
            continue
        alert.status, alert.resolution, alert.resolved_at = AlertStatus.RESOLVED, resolution, utcnow()
        session.add(alert)
        resolved.append(alert)
    return resolved


def open_alerts(session: Session, project: Project | None = None) -> list[DriftAlert]:
    query = select(DriftAlert).where(DriftAlert.status == AlertStatus.OPEN)
    if project is not None:
        query = query.where(DriftAlert.project_id == project.id)
    return list(session.exec(query.order_by(col(DriftAlert.id))).all())


# --- shadow ------------------------------------------------------------------------------------------


def set_shadow(
    session: Session, project: Project, number: int | None, *, by: str, shown: bool = False
) -> ModelVersion | None:
    """Put version `number` in shadow beside production on the pilot's messages (None: no shadow); with
    `shown` its answers are shown to the project's reviewers only, else to no one.

    Raises:
        DatasetError: no pilot, or the version is the one in production (or unknown).
    """
    piloted = pilot_of(session, project)
    if piloted is None or not piloted.enabled:
        raise DatasetError(
            f"Turn the pilot of *{project.name}* on first: `/finetune pilot {project.name} on`."
        )
    candidate = None
    if number is not None:
        candidate = versions.get_version(session, project, number)
        serving = versions.production(session, project)
        if serving is not None and serving.id == candidate.id:
            raise DatasetError(f"v{number} is in production already; shadow a candidate beside it.")
    piloted.shadow_version_id = candidate.id if candidate else None
    piloted.shadow_shown = shown and candidate is not None
    piloted.by, piloted.updated_at = by, utcnow()
    session.add(piloted)
    return candidate


@dataclass(frozen=True)
class ShadowReport:
    """Candidate against production on the same labeled pilot messages."""

    project: str
    candidate: int
    production: int
    pairs: int
    candidate_right: int
    production_right: int
    only_candidate: int  # discordant pairs the candidate got right
    only_production: int
    p_value: float

    def figures(self) -> dict[str, Any]:
        cand, prod = (
            acceptance.Rate(self.candidate_right, self.pairs),
            acceptance.Rate(self.production_right, self.pairs),
        )
        return {
            "candidate_rate": cand.rate,
            "candidate_ci": cand.interval,
            "production_rate": prod.rate,
            "production_ci": prod.interval,
        }


def claim_shadow_showing(session: Session, prediction: Prediction) -> bool:
    """Whether a shadow answer is to be shown to the reviewers now: its pilot's owner chose so for this
    shadow version, and it was not shown yet (claimed here, so a retried batch shows it once)."""
    piloted = session.get(Pilot, prediction.project_id)
    if (
        piloted is None
        or not prediction.shadow
        or not piloted.shadow_shown
        or piloted.shadow_version_id != prediction.version_id
        or prediction.status != PredictionStatus.DONE
    ):
        return False
    claimed = session.execute(
        update(Prediction)
        .where(col(Prediction.id) == prediction.id, col(Prediction.posted_at).is_(None))
        .values(posted_at=utcnow())
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def shadow_report(session: Session, project: Project) -> ShadowReport | None:
    """The comparison so far: each pilot message with both answers and a settled review (the label
    the current votes on its example agree on, one vote enough), production's answer against the
    candidate's; None without a shadow."""
    piloted = pilot_of(session, project)
    if piloted is None or piloted.shadow_version_id is None:
        return None
    candidate = session.get(ModelVersion, piloted.shadow_version_id)
    assert candidate is not None
    shadowed = session.exec(
        select(Prediction).where(
            Prediction.version_id == candidate.id,
            col(Prediction.shadow).is_(True),
            Prediction.status == PredictionStatus.DONE,
        )
    ).all()
    pairs = cand_right = prod_right = only_cand = only_prod = 0
    production_number = 0
    for shadow in shadowed:
        shown = session.exec(
            select(Prediction).where(
                Prediction.project_id == project.id,
                Prediction.channel_id == shadow.channel_id,
                Prediction.message_ts == shadow.message_ts,
                col(Prediction.shadow).is_(False),
                col(Prediction.example_id).is_not(None),
            )
        ).first()
        if shown is None or shown.example_id is None:
            continue
        votes = current_votes(session, [shown.example_id]).get(shown.example_id, {})
        label = agreement.consensus(votes, min_votes=1).label if votes else None
        if label is None:
            continue
        served = session.get(ModelVersion, shown.version_id)
        production_number = served.number if served else production_number
        right_c = accepted_value(project, shadow) == label
        right_p = accepted_value(project, shown) == label
        pairs += 1
        cand_right += right_c
        prod_right += right_p
        only_cand += right_c and not right_p
        only_prod += right_p and not right_c
    return ShadowReport(
        project.name,
        candidate.number,
        production_number,
        pairs,
        cand_right,
        prod_right,
        only_cand,
        only_prod,
        acceptance.mcnemar_exact(only_cand, only_prod),
    )


def claim_shadow_report(session: Session, settings: Settings, project: Project) -> ShadowReport | None:
    """The shadow report, once enough messages are labeled (``FTBOT_SHADOW_MIN_REVIEWS``), claimed so
    that it is posted once per shadow version; None until then (or once posted)."""
    piloted = pilot_of(session, project)
    report = shadow_report(session, project)
    if piloted is None or report is None or report.pairs < settings.ftbot_shadow_min_reviews:
        return None
    claimed = session.execute(  # a compare-and-set: two reviews at once post it once
        update(Pilot)
        .where(
            col(Pilot.project_id) == project.id,
            col(Pilot.shadow_version_id) == piloted.shadow_version_id,
            or_(
                col(Pilot.shadow_reported_id).is_(None),
                col(Pilot.shadow_reported_id) != piloted.shadow_version_id,
            ),
        )
        .values(shadow_reported_id=piloted.shadow_version_id)
    )
    return report if claimed.rowcount else None  # type: ignore[attr-defined]
