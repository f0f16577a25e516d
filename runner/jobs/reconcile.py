"""Keeping records honest: runs whose job vanished, failed, never reached Redis, or whose worker
stopped beating; status messages an outage left behind; deployments left half-way.

Every worker reconciles runs at start and every ``RECONCILE_EVERY_S`` after (`runner.jobs.worker`);
every bot process settles deployments at start and as often (`DeployReconciler`), since bots carry
the deploy hook's configuration. ``ftbot reconcile`` does one pass of both. A pass takes each run in
a unit of work of its own and survives Slack or the database being away for a moment: what it could
not do now, the next pass does.
"""

from __future__ import annotations

import logging
import shutil
import threading
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq.job import JobStatus
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.exceptions import FtbotError
from runner.core.models import TERMINAL_RUN_STATUSES, Project, RunStatus, TrainingRun, utcnow
from runner.jobs import runs
from runner.jobs.queues import fetch_job
from runner.jobs.runs import finish, scratch_dirs
from runner.jobs.tasks import JobContext, advice_for
from runner.registry import versions
from runner.registry.versions import Reconciled
from runner.slack import notify

log = logging.getLogger(__name__)

# Well inside the two minutes within which a run on a dead worker must be marked failed.
RECONCILE_EVERY_S = 30.0
# Status messages of runs that ended longer ago than this are left as they are.
RESHOW_WITHIN = timedelta(days=1)
OPEN = (RunStatus.QUEUED, RunStatus.RUNNING)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive UTC timestamps."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def reconcile_run(
    session: Session,
    run: TrainingRun,
    *,
    settings: Settings,
    connection: Redis | None,
    resumed: list[int] | None = None,
) -> bool:
    """End `run` if its job is gone, failed or stopped, if it was never queued in Redis (past
    ``FTBOT_ENQUEUE_TIMEOUT``: a crash between recording and enqueueing, or Redis restarted empty),
    or if its worker stopped beating. True when it was changed.

    RQ notices a job on a worker that died outright only in its maintenance pass (every ten
    minutes); the run's own heartbeat tells sooner. A running run whose worker died goes on from its
    last checkpoint instead (`runs.auto_resume`, up to ``FTBOT_RESUME_ATTEMPTS`` times): it is queued
    again here and its id added to `resumed`, for the caller to enqueue once this is committed.
    """
    job = fetch_job(connection, run.rq_job_id)
    status = job.get_status() if job is not None else None
    heartbeat = _aware(run.heartbeat_at)
    # A resumed run was queued again at its last heartbeat: its grace counts from then.
    created = max(filter(None, (_aware(run.created_at), heartbeat if run.attempt else None)), default=None)
    died = run.status == RunStatus.RUNNING and (
        (connection is not None and run.rq_job_id and job is None)
        or status == JobStatus.FAILED
        or (
            heartbeat is not None
            and heartbeat < utcnow() - timedelta(seconds=settings.ftbot_heartbeat_timeout)
        )
    )
    if died and connection is not None and resumed is not None:
        why = "its worker stopped (no heartbeat, or its job vanished)"
        if runs.auto_resume(session, run, settings=settings, why=why):
            resumed.append(run.id or 0)
            return True
    stale_before = utcnow() - timedelta(seconds=settings.ftbot_heartbeat_timeout)
    unqueued_before = utcnow() - timedelta(seconds=settings.ftbot_enqueue_timeout)
    if connection is not None and job is None and run.status == RunStatus.QUEUED:
        if created is not None and created > unqueued_before:
            return False  # just recorded: its job may be on its way to Redis
        finish(
            session,
            run,
            RunStatus.FAILED,
            error="The run never reached the job queue (its job is not in Redis): the request was "
            "interrupted, or Redis restarted and lost it.",
            advice="Press Train again.",
        )
    elif connection is not None and run.rq_job_id and job is None:
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
        return False
    return True


def reconcile(
    session: Session, *, settings: Settings, connection: Redis | None, resumed: list[int] | None = None
) -> list[int]:
    """`reconcile_run` for every open run in one unit of work, then clear ended runs' partial files.

    Args:
        resumed: receives the ids of runs queued again from their checkpoint (to enqueue after the
            commit: `enqueue_resumed`); None: such runs fail as before.

    Returns:
        The ids of the runs it changed.
    """
    changed = [
        run.id or 0
        for run in session.exec(select(TrainingRun).where(col(TrainingRun.status).in_(OPEN))).all()
        if reconcile_run(session, run, settings=settings, connection=connection, resumed=resumed)
    ]
    _clear_partials(session, settings)
    return changed


def enqueue_resumed(engine: Engine, settings: Settings, connection: Redis, run_ids: list[int]) -> None:
    """Enqueue runs that `reconcile_run` queued again (committed); one Redis refuses is failed."""
    for run_id in run_ids:
        with session_scope(engine) as session:
            run = session.get(TrainingRun, run_id)
        if run is None or run.status != RunStatus.QUEUED:
            continue
        try:
            runs.enqueue_run(engine, run, settings=settings, connection=connection)
        except FtbotError:
            log.exception("could not enqueue a resumed run", extra={"run_id": run_id})


def _clear_partials(session: Session, settings: Settings) -> None:
    ended = session.exec(
        select(TrainingRun).where(col(TrainingRun.status).in_([RunStatus.FAILED, RunStatus.CANCELLED]))
    ).all()
    for run in ended:
        project = session.get(Project, run.project_id)
        if project is not None:
            for folder in scratch_dirs(settings, project, run.id or 0):
                shutil.rmtree(folder, ignore_errors=True)


def behind_in_slack(session: Session) -> list[int]:
    """Ended runs (recently) whose Slack message does not show how they ended."""
    recent = utcnow() - RESHOW_WITHIN
    rows = session.exec(
        select(TrainingRun).where(
            col(TrainingRun.status).in_(TERMINAL_RUN_STATUSES), col(TrainingRun.channel_id).is_not(None)
        )
    ).all()
    return [
        run.id or 0
        for run in rows
        if run.shown_status != str(run.status) and (_aware(run.finished_at) or utcnow()) >= recent
    ]


def reconcile_once(connection: Redis) -> list[int]:
    """One pass over the runs, each in its own unit of work, then their messages in Slack.

    Returns:
        The ids of the runs it ended.
    """
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        open_ids = list(session.exec(select(TrainingRun.id).where(col(TrainingRun.status).in_(OPEN))).all())
    changed: list[int] = []
    resumed: list[int] = []
    for run_id in open_ids:
        try:
            with session_scope(ctx.engine) as session:
                run = session.get(TrainingRun, run_id)
                if run is None or run.status not in OPEN:
                    continue
                if reconcile_run(session, run, settings=ctx.settings, connection=connection, resumed=resumed):
                    changed.append(run_id or 0)
        except Exception:  # Redis or the database away for a moment: the next pass retries this run
            log.exception("could not reconcile a run", extra={"run_id": run_id})
    enqueue_resumed(ctx.engine, ctx.settings, connection, resumed)
    try:
        with session_scope(ctx.engine) as session:
            _clear_partials(session, ctx.settings)
            behind = behind_in_slack(session)
    except Exception:
        log.exception("could not finish the reconcile pass")
        behind = list(changed)
    client = notify.client_for(ctx.settings)
    for run_id in sorted(set(changed) | set(behind)):
        try:
            notify.run_status(ctx.engine, client, run_id)
        except Exception:  # the message stays behind; the next pass shows it
            log.exception("could not update a run's status message", extra={"run_id": run_id})
    if changed:
        log.warning("reconciled runs %s", changed)
    return changed


def reconcile_deploys(engine: Engine, settings: Settings) -> list[Reconciled]:
    """Settle deployments left half-way (`runner.registry.versions.reconcile_moves`) and tell each
    project's channel what was done."""
    outcomes = versions.reconcile_moves(engine, settings)
    try:
        notify.deploy_reconciled(settings, outcomes)
    except Exception:
        log.exception("could not announce reconciled deployments")
    return outcomes


class DeployReconciler(threading.Thread):
    """`reconcile_deploys` at start and then every ``interval`` seconds, until stopped (bot processes)."""

    def __init__(self, engine: Engine, settings: Settings, interval: float = RECONCILE_EVERY_S) -> None:
        super().__init__(name="ftbot-deploy-reconciler", daemon=True)
        self.engine, self.settings, self.interval = engine, settings, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                reconcile_deploys(self.engine, self.settings)
            except Exception:
                log.exception("deployment reconcile failed; trying again later")
            if self.stopped.wait(self.interval):
                return

    def stop(self) -> None:
        self.stopped.set()
