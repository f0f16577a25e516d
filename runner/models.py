"""Database tables (sqlmodel). The database is the source of truth for every process.

Schema changes go through Alembic (`runner/migrations`); a test checks the migrations match these
classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts_column() -> Column:
    return Column(DateTime(timezone=True), nullable=False)


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
    status: str = Field(default=InterviewStatus.OPEN.value, max_length=16)
    step: int = Field(default=0)
    primary: str | None = Field(default=None, max_length=32)
    secondary: str | None = Field(default=None, max_length=32)
    result_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
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
    status: str = Field(default=EventStatus.DONE.value, index=True, max_length=16)
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = Field(default=1)
    attempted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    GENERATION = "generation"


class Project(SQLModel, table=True):
    """A dataset project: its task, label legend, reviewers, gates and where its thread lives."""

    __tablename__ = "project"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    task_type: str = Field(max_length=16)
    channel_id: str = Field(max_length=32)
    root_ts: str | None = Field(default=None, index=True, max_length=32)
    owner_id: str = Field(max_length=32)
    labels_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    fields_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    reviewers_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    reviewer_groups_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    min_per_label: int = Field(default=10)
    agreement_threshold: float = Field(default=0.6)
    eval_fraction: float = Field(default=0.2)
    instructions: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    interview_id: int | None = Field(default=None, foreign_key="interview.id")
    tally_updated_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
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
    stats_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class SnapshotExample(SQLModel, table=True):
    """One example as frozen in a snapshot (copied, so later edits never change a snapshot)."""

    __tablename__ = "snapshot_example"

    snapshot_id: str = Field(foreign_key="snapshot.id", primary_key=True, max_length=64)
    example_id: int = Field(primary_key=True)
    split: str = Field(max_length=8)
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


TERMINAL_RUN_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED})


class TrainingRun(SQLModel, table=True):
    """One training job: its resolved config, where it reports in Slack, its progress and outcome."""

    __tablename__ = "training_run"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    snapshot_id: str = Field(foreign_key="snapshot.id", max_length=64)
    status: str = Field(default=RunStatus.QUEUED.value, index=True, max_length=16)
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    requested_by: str = Field(default="", max_length=64)
    rq_job_id: str | None = Field(default=None, max_length=64)
    eval_job_id: str | None = Field(default=None, max_length=64)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    status_ts: str | None = Field(default=None, max_length=32)
    progress_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    metrics_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    advice: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker: str | None = Field(default=None, max_length=128)
    pid: int | None = Field(default=None)
    version_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    heartbeat_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    RETIRED = "retired"
    DISCARDED = "discarded"


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
    status: str = Field(default=VersionStatus.CANDIDATE.value, max_length=16)
    artifact_path: str = Field(sa_column=Column(Text, nullable=False))
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    metrics_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    eval_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class ProductionAlias(SQLModel, table=True):
    """Which version serves a project; `revision` makes every move a compare-and-set."""

    __tablename__ = "production_alias"

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    version_id: int | None = Field(default=None, foreign_key="model_version.id")
    revision: int = Field(default=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())


class Deployment(SQLModel, table=True):
    """One move of the production alias: promote or rollback, who, why, from which version."""

    __tablename__ = "deployment"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    action: str = Field(max_length=16)
    version_id: int = Field(foreign_key="model_version.id")
    previous_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    by: str = Field(max_length=64)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    revision: int = Field(default=0)
    at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
