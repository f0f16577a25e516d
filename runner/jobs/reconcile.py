"""Keeping run records honest: runs whose job vanished, failed, or whose worker stopped beating.

Every worker runs a pass at start and every ``RECONCILE_EVERY_S`` after (`runner.jobs.worker`).
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, timedelta

from redis import Redis
from rq.job import JobStatus
from sqlmodel import Session, col, select

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import Project, RunStatus, TrainingRun, utcnow
from runner.jobs.queues import fetch_job
from runner.jobs.runs import finish, partial_dir
from runner.jobs.tasks import JobContext, advice_for
from runner.slack import notify

log = logging.getLogger(__name__)

# Well inside the two minutes within which a run on a dead worker must be marked failed.
RECONCILE_EVERY_S = 30.0


def reconcile(session: Session, *, settings: Settings, connection: Redis | None) -> list[int]:
    """Mark runs whose job is gone, failed or whose worker stopped beating, and clear their files.

    RQ notices a job on a worker that died outright only in its maintenance pass (every ten
    minutes); the run's own heartbeat tells sooner.

    Returns:
        The ids of the runs it changed.
    """
    changed: list[int] = []
    stale_before = utcnow() - timedelta(seconds=settings.ftbot_heartbeat_timeout)
    open_runs = session.exec(
        select(TrainingRun).where(col(TrainingRun.status).in_([RunStatus.QUEUED, RunStatus.RUNNING]))
    ).all()
    for run in open_runs:
        job = fetch_job(connection, run.rq_job_id)
        status = job.get_status() if job is not None else None
        heartbeat = run.heartbeat_at
        if heartbeat is not None and heartbeat.tzinfo is None:  # SQLite returns naive UTC
            heartbeat = heartbeat.replace(tzinfo=UTC)
        if connection is not None and run.rq_job_id and job is None:
            finish(
                session,
                run,
                RunStatus.FAILED,
                error="The job is no longer in Redis (restarted or expired).",
                advice="Press Train again.",
            )
        elif status == JobStatus.FAILED:
            finish(
                session,
                run,
                RunStatus.FAILED,
                error="The job failed in the worker.",
                advice=advice_for(str(getattr(job, "exc_info", "") or "")),
            )
        elif status in (JobStatus.STOPPED, JobStatus.CANCELED):
            finish(session, run, RunStatus.CANCELLED, error="Stopped.")
        elif run.status == RunStatus.RUNNING and heartbeat is not None and heartbeat < stale_before:
            finish(
                session,
                run,
                RunStatus.FAILED,
                error=f"The worker stopped reporting (no heartbeat for {settings.ftbot_heartbeat_timeout:.0f}"
                " s); it was probably killed.",
                advice=advice_for("signal 9"),
            )
        else:
            continue
        changed.append(run.id or 0)
    for run in session.exec(
        select(TrainingRun).where(col(TrainingRun.status).in_([RunStatus.FAILED, RunStatus.CANCELLED]))
    ).all():
        project = session.get(Project, run.project_id)
        if project is not None:
            shutil.rmtree(partial_dir(settings, project, run.id or 0), ignore_errors=True)
    return changed


def reconcile_once(connection: Redis) -> list[int]:
    """One pass (`reconcile`) in its own unit of work, then the changed runs' status in Slack."""
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        changed = reconcile(session, settings=ctx.settings, connection=connection)
    client = notify.client_for(ctx.settings)
    for run_id in changed:
        notify.run_status(ctx.engine, client, run_id)
    if changed:
        log.warning("reconciled runs %s", changed)
    return changed
