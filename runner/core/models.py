"""Database tables (sqlmodel). The database is the source of truth for every process.

Statuses are `StrEnum`s stored in enum columns (a native type on PostgreSQL); structured values are
JSON columns (JSONB on PostgreSQL). Schema changes go through Alembic (`runner/core/migrations`); a
test checks the migrations match these classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# none_as_null: None is SQL NULL (not the JSON document null), so "IS NULL" finds it.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts_column() -> Column:
    return Column(DateTime(timezone=True), nullable=False)


def _enum_column(
    enum: type[StrEnum], *, default: StrEnum | None = None, index: bool = False, nullable: bool = False
) -> Column:
    """A column of `enum`'s values (PostgreSQL: a native enum type named after the class)."""
    return Column(
        SqlEnum(
            enum,
            name=enum.__name__.lower(),
            values_callable=lambda members: [m.value for m in members],
            validate_strings=True,
        ),
        nullable=nullable,
        default=default,
        index=index,
    )


def _json_column(*, nullable: bool = False) -> Column:
    return Column(JSONType, nullable=nullable)


class InterviewStatus(StrEnum):
    OPEN = "open"
    FINISHED = "finished"


class Interview(SQLModel, table=True):
    """One readiness interview: who asked, where its thread is, and its result once finished."""

    __tablename__ = "interview"

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(default="", max_length=32)
    channel_id: str = Field(index=True, max_length=32)
    user_id: str = Field(max_length=32)
    topic: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    source: str = Field(default="slash", max_length=16)
    thread_ts: str | None = Field(default=None, max_length=32)
    question_ts: str | None = Field(default=None, max_length=32)
    status: InterviewStatus = Field(
        default=InterviewStatus.OPEN, sa_column=_enum_column(InterviewStatus, default=InterviewStatus.OPEN)
    )
    step: int = Field(default=0)
    primary: str | None = Field(default=None, max_length=32)
    secondary: str | None = Field(default=None, max_length=32)
    result: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class InterviewAnswer(SQLModel, table=True):
    """One answer as given; `Back` and `Restart` mark answers retracted instead of deleting them."""

    __tablename__ = "interview_answer"

    id: int | None = Field(default=None, primary_key=True)
    interview_id: int = Field(foreign_key="interview.id", index=True)
    question_id: str = Field(max_length=64)
    answer: str = Field(max_length=16)
    user_id: str = Field(max_length=32)
    answered_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    retracted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class EventStatus(StrEnum):
    PENDING = "pending"  # received (and acknowledged); its listener has not finished yet
    DONE = "done"
    FAILED = "failed"  # its listener raised; replayed until the attempts run out


class ProcessedEvent(SQLModel, table=True):
    """Slack events received: the primary key makes a redelivery a no-op on every replica, and the
    body of an event whose listener never finished (a crash after the ack) is kept to replay it."""

    __tablename__ = "processed_event"
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(default="", max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    status: EventStatus = Field(
        default=EventStatus.DONE, sa_column=_enum_column(EventStatus, default=EventStatus.DONE, index=True)
    )
    body: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    attempts: int = Field(default=1)
    attempted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Split(StrEnum):
    TRAIN = "train"
    EVAL = "eval"


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    GENERATION = "generation"


class Project(SQLModel, table=True):
    """A dataset project: its task, label legend, reviewers, gates and where its thread lives."""

    __tablename__ = "project"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    task_type: TaskType = Field(sa_column=_enum_column(TaskType))
    channel_id: str = Field(max_length=32)
    root_ts: str | None = Field(default=None, index=True, max_length=32)
    owner_id: str = Field(max_length=32)
    labels: list[dict[str, str]] = Field(default_factory=list, sa_column=_json_column())  # name, emoji
    fields: list[str] = Field(default_factory=list, sa_column=_json_column())  # extraction fields
    reviewers: list[str] = Field(default_factory=list, sa_column=_json_column())  # user ids
    reviewer_groups: list[str] = Field(default_factory=list, sa_column=_json_column())  # user group ids
    min_per_label: int = Field(default=10)
    agreement_threshold: float = Field(default=0.6)
    eval_fraction: float = Field(default=0.2)
    instructions: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    interview_id: int | None = Field(default=None, foreign_key="interview.id")
    tally_updated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # Slack's tally or :warning: marks may be behind the data (a refresh did not go through); the
    # repair pass refreshes the project until one does.
    tally_dirty: bool = Field(default=False)
    # Why the root message could not be posted (None: posted, or being posted right now);
    # `/finetune repost` tries again.
    root_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Promote refuses a version that has not won a closed blind A/B against the one in production.
    require_ab: bool = Field(default=False)
    # Consensus weighs reviewers by their estimated reliability (Dawid–Skene) instead of one vote each.
    weighted_consensus: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class Example(SQLModel, table=True):
    """One labeled-or-not example: a Slack message (or an imported row) and its target output."""

    __tablename__ = "example"
    __table_args__ = (UniqueConstraint("project_id", "channel_id", "message_ts", name="uq_example_message"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    channel_id: str = Field(default="", max_length=32)
    message_ts: str = Field(max_length=48)
    author_id: str = Field(default="", max_length=32)
    source: str = Field(default="thread", max_length=16)
    raw_text: str = Field(sa_column=Column(Text, nullable=False))
    input_text: str = Field(sa_column=Column(Text, nullable=False))
    target_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    overlong: bool = Field(default=False)
    final_label: str | None = Field(default=None, max_length=64)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    warning_marked: bool = Field(default=False)
    # The side of the split this example took in the first snapshot that held it; it never changes.
    split: Split | None = Field(default=None, sa_column=_enum_column(Split, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    edited_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class Vote(SQLModel, table=True):
    """A reviewer's reaction on an example; the unique key makes a redelivered reaction a no-op."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("example_id", "reviewer_id", "value", name="uq_vote"),)

    id: int | None = Field(default=None, primary_key=True)
    example_id: int = Field(foreign_key="example.id", index=True)
    reviewer_id: str = Field(max_length=32)
    value: str = Field(max_length=64)
    stale: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class ReviewerHint(SQLModel, table=True):
    """Non-reviewers who already got the one ephemeral hint for a project."""

    __tablename__ = "reviewer_hint"

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    user_id: str = Field(primary_key=True, max_length=32)


class Snapshot(SQLModel, table=True):
    """A frozen, content-addressed dataset version: the id is the hash of its examples and splits."""

    __tablename__ = "snapshot"

    id: str = Field(primary_key=True, max_length=64)
    project_id: int = Field(foreign_key="project.id", index=True)
    created_by: str = Field(default="", max_length=64)
    n_train: int = Field(default=0)
    n_eval: int = Field(default=0)
    stats: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class SnapshotExample(SQLModel, table=True):
    """One example as frozen in a snapshot (copied, so later edits never change a snapshot)."""

    __tablename__ = "snapshot_example"

    snapshot_id: str = Field(foreign_key="snapshot.id", primary_key=True, max_length=64)
    example_id: int = Field(primary_key=True)
    split: Split = Field(sa_column=_enum_column(Split))
    input_text: str = Field(sa_column=Column(Text, nullable=False))
    target: str = Field(sa_column=Column(Text, nullable=False))
    label: str = Field(default="", max_length=64)


class AuditEntry(SQLModel, table=True):
    """Every privileged attempt, allowed or refused: who, what, on which project, and why."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    user_id: str = Field(max_length=32)
    action: str = Field(max_length=32)
    project_id: int | None = Field(default=None, foreign_key="project.id", index=True)
    target: str = Field(default="", max_length=128)
    allowed: bool = Field(default=False)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"  # stopped at a checkpoint; Resume enqueues it again


TERMINAL_RUN_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED})


class TrainingRun(SQLModel, table=True):
    """One training job: its resolved config, where it reports in Slack, its progress and outcome."""

    __tablename__ = "training_run"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    snapshot_id: str = Field(foreign_key="snapshot.id", max_length=64)
    status: RunStatus = Field(
        default=RunStatus.QUEUED, sa_column=_enum_column(RunStatus, default=RunStatus.QUEUED, index=True)
    )
    # The status the run's Slack message shows (None: never posted), so a message a Slack outage left
    # behind is brought up to date by the reconciler.
    shown_status: str | None = Field(default=None, max_length=16)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    requested_by: str = Field(default="", max_length=64)
    rq_job_id: str | None = Field(default=None, max_length=64)
    eval_job_id: str | None = Field(default=None, max_length=64)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    status_ts: str | None = Field(default=None, max_length=32)
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    metrics: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    advice: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker: str | None = Field(default=None, max_length=128)
    pid: int | None = Field(default=None)
    version_id: int | None = Field(default=None)
    control: str | None = Field(default=None, max_length=16)  # "pause": asked of the running job
    attempt: int = Field(default=0)  # times enqueued again (resumes); part of the job ids
    auto_resumes: int = Field(default=0)  # of those, resumes after its worker died
    checkpoint_step: int | None = Field(default=None)  # the step of its last checkpoint
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # e.g. how it resumed
    # The preflight's estimate (runner.jobs.preflight): tokens, seconds, GPU-hours, memory.
    estimate: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    # The admin who let it go over the project's GPU-hour budget (FTBOT_BUDGET_GPU_HOURS), if one had to.
    approved_by: str | None = Field(default=None, max_length=64)
    # The hardware class of the worker that trained it (runner.jobs.hardware): its throughput is kept
    # per class, so the next estimate for that class learns from it.
    hardware_class: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class RequestStatus(StrEnum):
    PENDING = "pending"  # its estimate is shown with Confirm (or Approve) and Cancel
    CONFIRMED = "confirmed"  # its run was recorded (and enqueued)
    CANCELLED = "cancelled"  # nothing was queued


class TrainingRequest(SQLModel, table=True):
    """A training request waiting for its Confirm: the snapshot, resolved config and preflight
    estimate it will train with, and the budget figures shown. Confirming it is a compare-and-set on
    `status` (pending → confirmed), so a double click or a retried request records one run."""

    __tablename__ = "training_request"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    snapshot_id: str = Field(foreign_key="snapshot.id", max_length=64)
    status: RequestStatus = Field(
        default=RequestStatus.PENDING, sa_column=_enum_column(RequestStatus, default=RequestStatus.PENDING)
    )
    config: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    estimate: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    # The project's GPU-hour budget when asked (runner.jobs.budget), None without FTBOT_BUDGET_GPU_HOURS.
    budget: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    requested_by: str = Field(default="", max_length=64)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    message_ts: str | None = Field(default=None, max_length=32)  # the message with the buttons
    decided_by: str | None = Field(default=None, max_length=64)
    run_id: int | None = Field(default=None, foreign_key="training_run.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class VersionStatus(StrEnum):
    """What may become of a version. Whether it serves is the production alias's business alone."""

    CANDIDATE = "candidate"  # may be promoted
    DISCARDED = "discarded"  # never to serve
    ROLLED_BACK = "rolled_back"  # production was rolled back from it: promoted again only by name, confirmed


class ModelVersion(SQLModel, table=True):
    """A registered adapter, v1…vN per project, with its lineage (snapshot, base model, config)."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_model_version_number"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    number: int
    run_id: int | None = Field(default=None, foreign_key="training_run.id")
    snapshot_id: str = Field(foreign_key="snapshot.id", max_length=64)
    base_model: str = Field(max_length=512)
    status: VersionStatus = Field(
        default=VersionStatus.CANDIDATE,
        sa_column=_enum_column(VersionStatus, default=VersionStatus.CANDIDATE),
    )
    artifact_path: str = Field(sa_column=Column(Text, nullable=False))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    evaluation: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    # Where its evaluation summary was posted, so later results (a blind A/B) are shown on it.
    summary_channel_id: str | None = Field(default=None, max_length=32)
    summary_ts: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class ProductionAlias(SQLModel, table=True):
    """Which version serves a project; `revision` makes every move a compare-and-set, and
    `pending_id` names the move being deployed (one at a time per project)."""

    __tablename__ = "production_alias"

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    version_id: int | None = Field(default=None, foreign_key="model_version.id")
    revision: int = Field(default=0)
    pending_id: int | None = Field(default=None)  # a Deployment id while a move is under way
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class DeployAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class DeployState(StrEnum):
    """Where a move stands: recorded → (hook told) → alias committed → manifest written."""

    PENDING = "pending"  # recorded; the deploy hook is being told (the alias has not moved)
    COMMITTED = "committed"  # the hook agreed and the alias moved; the manifest is being written
    DONE = "done"
    FAILED = "failed"  # the hook refused or failed: the alias never moved
    REVERTED = "reverted"  # abandoned mid-way (a crash, a lost database): undone by the reconciler


OPEN_DEPLOY_STATES = frozenset({DeployState.PENDING, DeployState.COMMITTED})


class Deployment(SQLModel, table=True):
    """One move of the production alias, or an attempt at one: promote or rollback, who, why
    (including which button), from which version, and how far it got."""

    __tablename__ = "deployment"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    action: DeployAction = Field(sa_column=_enum_column(DeployAction))
    version_id: int = Field(foreign_key="model_version.id")
    previous_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    by: str = Field(max_length=64)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    revision: int = Field(default=0)  # the alias revision this move creates
    state: DeployState = Field(
        default=DeployState.DONE, sa_column=_enum_column(DeployState, default=DeployState.DONE, index=True)
    )
    owner: str = Field(default="", max_length=128)  # host:pid of the process carrying the move out
    owner_since: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))  # why it failed
    at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class Pilot(SQLModel, table=True):
    """A project's pilot: while on, new top-level messages in `channel_id` get production's suggestion."""

    __tablename__ = "pilot"

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    channel_id: str = Field(index=True, max_length=32)
    enabled: bool = Field(default=True)
    # A candidate answering the same messages beside production: stored, not shown to the channel.
    shadow_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    # Its answers are shown to the project's reviewers only (ephemeral, in each message's thread).
    shadow_shown: bool = Field(default=False)
    # The shadow report was posted for this shadow version (once per version).
    shadow_reported_id: int | None = Field(default=None)
    by: str = Field(default="", max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class PredictionStatus(StrEnum):
    QUEUED = "queued"  # recorded and on the predict queue
    RUNNING = "running"  # claimed by a predict worker
    DONE = "done"  # answered (and, for a pilot message, the suggestion posted or being posted)
    FAILED = "failed"


class ReviewOutcome(StrEnum):
    """What reviewers made of a suggestion (from their current reactions)."""

    ACCEPTED = "accepted"
    CORRECTED = "corrected"


class Prediction(SQLModel, table=True):
    """One answer asked of a version: a pilot message (keyed by Slack's ids, so a redelivered message
    is predicted once) or a request from the command line; its answer, latency and review."""

    __tablename__ = "prediction"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "version_id", "channel_id", "message_ts", name="uq_prediction_message"
        ),
        # A reply in a pilot message's thread finds its suggestions by the message.
        Index("ix_prediction_message", "channel_id", "message_ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    version_id: int = Field(foreign_key="model_version.id", index=True)
    channel_id: str = Field(default="", max_length=32)
    message_ts: str = Field(max_length=48)
    author_id: str = Field(default="", max_length=32)
    input_text: str = Field(sa_column=Column(Text, nullable=False))
    shadow: bool = Field(default=False)  # a candidate's answer beside production's: never posted
    status: PredictionStatus = Field(
        default=PredictionStatus.QUEUED,
        sa_column=_enum_column(PredictionStatus, default=PredictionStatus.QUEUED, index=True),
    )
    output_text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    label: str | None = Field(default=None, max_length=64)  # classification: the label the answer names
    confidence: float | None = Field(default=None)
    model_seconds: float | None = Field(default=None)  # the batch's generation time
    batch_size: int | None = Field(default=None)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    suggestion_ts: str | None = Field(default=None, index=True, max_length=32)  # the reply in the thread
    example_id: int | None = Field(default=None, foreign_key="example.id")  # once reviewed
    outcome: ReviewOutcome | None = Field(default=None, sa_column=_enum_column(ReviewOutcome, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    posted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class Correction(SQLModel, table=True):
    """A reviewer's ❌ on a pilot suggestion and their reply in its thread with the right output: the
    reply counts as the reviewer's correction while the ❌ stands (the latest reply that fits the task)."""

    __tablename__ = "correction"
    __table_args__ = (UniqueConstraint("prediction_id", "reviewer_id", name="uq_correction_reviewer"),)

    id: int | None = Field(default=None, primary_key=True)
    prediction_id: int = Field(foreign_key="prediction.id", index=True)
    reviewer_id: str = Field(max_length=32)
    rejected: bool = Field(default=False)  # the reviewer's ❌ is on the suggestion
    reply_ts: str | None = Field(default=None, index=True, max_length=32)  # their latest reply that fits
    value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # what it says is right
    # What is counted now: the label voted (classification) or the corrected output (drafts, an example
    # of its own at the reply, `example_id`); None while nothing is.
    applied: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    example_id: int | None = Field(default=None, foreign_key="example.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class AlertKind(StrEnum):
    ACCEPTANCE = "acceptance"  # reviewers accept fewer suggestions than the version's offline accuracy
    LABEL_MIX = "label_mix"  # the labels it predicts are mixed unlike the ones it was trained on


class DriftAlert(SQLModel, table=True):
    """An acceptance-drop alert on the version in production: its evidence, where it was posted, and
    when (and how) it was resolved."""

    __tablename__ = "drift_alert"
    # One alert of a kind per version per production move: a second reviewer's reaction finds it raised.
    __table_args__ = (
        UniqueConstraint("project_id", "version_id", "revision", "kind", name="uq_drift_alert_move"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    version_id: int = Field(foreign_key="model_version.id")
    kind: AlertKind = Field(
        default=AlertKind.ACCEPTANCE, sa_column=_enum_column(AlertKind, default=AlertKind.ACCEPTANCE)
    )
    status: AlertStatus = Field(
        default=AlertStatus.OPEN, sa_column=_enum_column(AlertStatus, default=AlertStatus.OPEN, index=True)
    )
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=_json_column())
    channel_id: str = Field(default="", max_length=32)
    message_ts: str | None = Field(default=None, max_length=32)
    revision: int = Field(default=0)  # the production move the alert's Rollback button was drawn from
    resolution: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # When its chart was uploaded into its thread (claimed before the upload: one chart per alert).
    chart_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    opened_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ComparisonStatus(StrEnum):
    OPEN = "open"  # items posted (or being posted), identities hidden, votes counted
    CLOSED = "closed"  # identities revealed and the result computed; votes no longer count


class AbChoice(StrEnum):
    """A reviewer's verdict on a blind A/B item."""

    A = "a"
    B = "b"
    TIE = "tie"


class Comparison(SQLModel, table=True):
    """A blind A/B comparison of versions of a project: where its items are posted, the seed that
    drew them, and, once closed, its result (win rates, intervals, Bradley-Terry scores)."""

    __tablename__ = "comparison"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    status: ComparisonStatus = Field(
        default=ComparisonStatus.OPEN,
        sa_column=_enum_column(ComparisonStatus, default=ComparisonStatus.OPEN, index=True),
    )
    version_ids: list[int] = Field(default_factory=list, sa_column=_json_column())  # as the owner named them
    source: str = Field(max_length=16)  # "heldout" | "pilot": where the inputs came from
    n: int  # items
    votes_needed: int = Field(default=1)  # live votes per item before it closes by itself
    seed: int
    channel_id: str = Field(max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)  # the header; items are its replies
    result_ts: str | None = Field(default=None, max_length=32)
    created_by: str = Field(max_length=64)
    closed_by: str | None = Field(default=None, max_length=64)
    result: dict[str, Any] | None = Field(default=None, sa_column=_json_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ComparisonItem(SQLModel, table=True):
    """One input of a comparison with two versions' outputs, shown as A and B in a drawn order."""

    __tablename__ = "comparison_item"
    __table_args__ = (UniqueConstraint("comparison_id", "position", name="uq_comparison_item_position"),)

    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    position: int  # 1..n
    input_text: str = Field(sa_column=Column(Text, nullable=False))
    origin: str = Field(default="", max_length=64)  # "example 12", "pilot C1/1700000000.000100"
    version_a_id: int = Field(foreign_key="model_version.id")  # shown as A
    version_b_id: int = Field(foreign_key="model_version.id")  # shown as B
    prediction_a_id: int = Field(foreign_key="prediction.id")
    prediction_b_id: int = Field(foreign_key="prediction.id")
    message_ts: str | None = Field(default=None, index=True, max_length=32)
    posted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ComparisonReaction(SQLModel, table=True):
    """A reviewer's 🅰️ / 🅱️ / 🟰 on an item; the latest one still there is their vote, and the unique
    key makes a redelivered reaction a no-op."""

    __tablename__ = "comparison_reaction"
    __table_args__ = (UniqueConstraint("item_id", "reviewer_id", "choice", name="uq_comparison_reaction"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="comparison_item.id", index=True)
    reviewer_id: str = Field(max_length=32)
    choice: AbChoice = Field(sa_column=_enum_column(AbChoice))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
