"""Database tables (sqlmodel). The database is the source of truth for every process.

Schema changes go through Alembic (`runner/migrations`); a test checks the migrations match these
classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, Text
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


class ProcessedEvent(SQLModel, table=True):
    """Slack event ids already handled: the primary key makes a redelivery a no-op on every replica."""

    __tablename__ = "processed_event"
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(default="", max_length=64)
    received_at: datetime = Field(default_factory=utcnow, sa_column=_ts_column())
