"""A project's GPU-hour budget: ``FTBOT_BUDGET_GPU_HOURS`` per project and calendar month (UTC).

What a month has used is counted from the project's runs requested in it:

* runs that ended (finished, failed, cancelled) count the GPU-hours they really took: the training
  job's measured wall time (``metrics.wall_time_s``), else the time from its start to its end, times
  its processes (worker-hours on CPU);
* runs still to end (queued, running, paused) count their preflight estimate.

A run whose estimate takes the month past the budget needs an admin's approval (`runner.core.policy`'s
``approve``) before it is queued; training requests nobody confirmed count nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from runner.core.config import Settings
from runner.core.models import TERMINAL_RUN_STATUSES, Project, TrainingRun, utcnow


@dataclass(frozen=True)
class Budget:
    """A project's budget this month, and what the month has used of it."""

    limit: float
    """``FTBOT_BUDGET_GPU_HOURS``."""
    window: str
    """The month counted, for people (``November 2026``)."""
    spent: float
    """GPU-hours of runs that ended."""
    committed: float
    """Estimated GPU-hours of runs queued, running or paused."""
    run: float
    """The estimate of the run asked for."""

    @property
    def total(self) -> float:
        """What the month comes to with the run asked for."""
        return self.spent + self.committed + self.run

    @property
    def over(self) -> bool:
        return self.total > self.limit

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": round(self.total, 6), "over": self.over}


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def actual_gpu_hours(run: TrainingRun) -> float:
    """The GPU-hours an ended run took (see the module docstring); 0 for one that never started."""
    procs = int(run.config.get("procs", 1) or 1) * int(run.config.get("nodes", 1) or 1)
    wall = (run.metrics or {}).get("wall_time_s")
    if isinstance(wall, int | float) and wall > 0:
        return float(wall) * procs / 3600
    seconds = job_seconds(run)
    return (seconds or 0.0) * procs / 3600


def job_seconds(run: TrainingRun) -> float | None:
    """Seconds from the run's start to its end (None unless it started and ended)."""
    if run.started_at is None or run.finished_at is None:
        return None
    started, finished = run.started_at, run.finished_at
    if started.tzinfo is None or finished.tzinfo is None:  # SQLite hands back naive datetimes, in UTC
        started, finished = started.replace(tzinfo=UTC), finished.replace(tzinfo=UTC)
    return max(0.0, (finished - started).total_seconds())


def estimated_gpu_hours(run: TrainingRun) -> float:
    value = (run.estimate or {}).get("gpu_hours")
    return float(value) if isinstance(value, int | float) else 0.0


def usage(
    session: Session,
    settings: Settings,
    project: Project,
    run_gpu_hours: float,
    *,
    now: datetime | None = None,
) -> Budget | None:
    """The project's budget this month with a run of ``run_gpu_hours`` added; None without a budget."""
    if settings.ftbot_budget_gpu_hours is None:
        return None
    start = month_start(now or utcnow())
    found = session.exec(
        select(TrainingRun).where(
            col(TrainingRun.project_id) == project.id, col(TrainingRun.created_at) >= start
        )
    ).all()
    spent = sum(actual_gpu_hours(r) for r in found if r.status in TERMINAL_RUN_STATUSES)
    committed = sum(estimated_gpu_hours(r) for r in found if r.status not in TERMINAL_RUN_STATUSES)
    return Budget(
        limit=float(settings.ftbot_budget_gpu_hours),
        window=f"{start:%B %Y}",
        spent=round(spent, 6),
        committed=round(committed, 6),
        run=round(run_gpu_hours, 6),
    )
