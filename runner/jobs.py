"""Training jobs on RQ: enqueue, run on a GPU worker, report, cancel, and reconcile.

Redis carries only ids: a job reads its run (config, snapshot) from the database and writes its
outcome back; jobs use RQ's JSON serializer. The job functions are imported by dotted path in the
worker's work-horse, so torch is loaded there and never in the bot or the worker's parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col, select

from runner import datasets, notify
from runner.config import Settings, load_settings
from runner.db import make_engine, session_scope
from runner.exceptions import DatasetError, TrainingRequestError, TrainingTimeout
from runner.models import (
    TERMINAL_RUN_STATUSES,
    ModelVersion,
    Project,
    RunStatus,
    TrainingRun,
    VersionStatus,
    utcnow,
)
from runner.training_config import Progress, TrainConfig, TrainingCancelled

log = logging.getLogger(__name__)

TRAIN_QUEUE = "train"
EVAL_QUEUE = "eval"
# A job that outlives this is killed by RQ (and reported failed); real QLoRA runs on a 7B model
# take hours, so the default is generous and configurable (FTBOT_JOB_TIMEOUT).
HEARTBEAT_EVERY_S = 10.0
BACKSTOP_S = 600
# Faults that a second try can fix: the database or Redis briefly away, a dropped connection.
TRANSIENT = (OperationalError, ConnectionError, TimeoutError)


def queue(name: str, connection: Redis) -> Queue:
    """An RQ queue using the JSON serializer (jobs carry ids only)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def train_job_id(run_id: int) -> str:
    return f"ftbot-train-{run_id}"


def eval_job_id(run_id: int) -> str:
    return f"ftbot-eval-{run_id}"


def artifacts_dir(settings: Settings, project: Project) -> Path:
    return Path(settings.ftbot_data_dir) / "artifacts" / project.name


def partial_dir(settings: Settings, project: Project, run_id: int) -> Path:
    """Where a run writes before its version is registered (removed if the run does not finish)."""
    return artifacts_dir(settings, project) / f".run-{run_id}.partial"


# --- enqueueing (bot and CLI) -------------------------------------------------------------------


def resolve_config(settings: Settings, overrides: dict[str, str]) -> TrainConfig:
    """The run's config: defaults, ``FTBOT_BASE_MODEL``, then the user's ``key=value`` overrides.

    Raises:
        TrainingRequestError: no base model, unknown keys or invalid values (all listed).
    """
    base_model = overrides.get("base_model") or settings.ftbot_base_model
    if not base_model:
        raise TrainingRequestError("No base model: set FTBOT_BASE_MODEL or pass base_model=<id or path>.")
    try:
        return TrainConfig.from_overrides(TrainConfig(base_model=base_model), overrides)
    except ValueError as exc:
        raise TrainingRequestError(str(exc)) from exc


def parse_overrides(words: list[str]) -> dict[str, str]:
    """``["epochs=3", "lr=1e-4"]`` → ``{"epochs": "3", "lr": "1e-4"}``.

    Raises:
        TrainingRequestError: a word is not ``key=value``.
    """
    bad = [w for w in words if "=" not in w or w.startswith("=")]
    if bad:
        raise TrainingRequestError(f"Use key=value for training options; not understood: {' '.join(bad)}")
    return dict(w.split("=", 1) for w in words)


def start_training(
    session: Session,
    *,
    settings: Settings,
    connection: Redis | None,
    project: Project,
    overrides: dict[str, str],
    requested_by: str,
    require_gates: bool = True,
) -> TrainingRun:
    """Snapshot the dataset, record a queued run, and enqueue its training and evaluation jobs.

    Args:
        connection: Redis; None records the run without enqueueing (``ftbot train --inline``).
        require_gates: refuse when the dataset's readiness gates do not all pass.

    Raises:
        TrainingRequestError: gates failing, bad options, or no usable example.
    """
    config = resolve_config(settings, overrides)
    if require_gates:
        stats = datasets.project_stats(session, project)
        failing = [g.name for g in stats.gates if not g.passed]
        if failing:
            raise TrainingRequestError(
                f"{project.name} is not ready to train: {', '.join(failing)} "
                f"(see `/finetune status {project.name}`)."
            )
    try:
        snapshot, _ = datasets.build_snapshot(session, project, created_by=requested_by)
    except DatasetError as exc:
        raise TrainingRequestError(str(exc)) from exc
    assert project.id is not None
    run = TrainingRun(
        project_id=project.id,
        snapshot_id=snapshot.id,
        config_json=json.dumps(config.to_dict()),
        requested_by=requested_by,
        channel_id=project.channel_id if project.root_ts else None,
        thread_ts=project.root_ts,
    )
    session.add(run)
    session.commit()
    if connection is not None:
        enqueue(session, run, settings=settings, connection=connection)
    return run


def enqueue(session: Session, run: TrainingRun, *, settings: Settings, connection: Redis) -> None:
    """Put the run's training job on the train queue and its evaluation after it on the eval queue."""
    assert run.id is not None
    train = queue(TRAIN_QUEUE, connection).enqueue(
        "runner.jobs.train_job",
        run.id,
        job_id=train_job_id(run.id),
        # The job enforces FTBOT_JOB_TIMEOUT itself, between steps, so it can fail cleanly; RQ's own
        # limit is a backstop for a job stuck outside the training loop (loading a model, say).
        job_timeout=settings.ftbot_job_timeout + BACKSTOP_S,
        result_ttl=7 * 24 * 3600,
        failure_ttl=30 * 24 * 3600,
        retry=Retry(max=2, interval=[30, 120]),
        on_failure=Callback("runner.jobs.on_train_failure"),
        on_stopped=Callback("runner.jobs.on_train_stopped"),
        meta={"run_id": run.id, "project_id": run.project_id},
        description=f"train run {run.id} of project {run.project_id}",
    )
    evaluation = queue(EVAL_QUEUE, connection).enqueue(
        "runner.evaluation.evaluate_job",
        run.id,
        job_id=eval_job_id(run.id),
        depends_on=train,
        job_timeout=settings.ftbot_job_timeout,
        result_ttl=7 * 24 * 3600,
        meta={"run_id": run.id},
        description=f"evaluate run {run.id}",
    )
    run.rq_job_id, run.eval_job_id = train.id, evaluation.id
    session.add(run)
    session.commit()


def cancel(session: Session, run: TrainingRun, *, connection: Redis | None) -> TrainingRun:
    """Stop a queued or running run (RQ's stop-job command kills a started work-horse).

    A started job is marked cancelled by its ``on_stopped`` callback in the worker, which also
    removes its partial artifacts; a queued one is cancelled here.

    Raises:
        TrainingRequestError: the run already ended.
    """
    if run.status in TERMINAL_RUN_STATUSES:
        raise TrainingRequestError(f"Run {run.id} already {run.status}.")
    job = _fetch(connection, run.rq_job_id)
    if job is not None and connection is not None and job.get_status() == JobStatus.STARTED:
        send_stop_job_command(connection, job.id, serializer=JSONSerializer)
        return run
    if job is not None:
        with contextlib.suppress(InvalidJobOperation):  # it ended between the check and now
            job.cancel()
    _finish(session, run, RunStatus.CANCELLED, error="Cancelled before it started.")
    return run


def _fetch(connection: Redis | None, job_id: str | None) -> Job | None:
    if connection is None or not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def _finish(
    session: Session,
    run: TrainingRun,
    status: RunStatus,
    *,
    error: str | None = None,
    advice: str | None = None,
) -> None:
    run.status = status.value
    run.error = error
    run.advice = advice
    run.finished_at = utcnow()
    session.add(run)
    session.commit()


# --- in the worker ----------------------------------------------------------------------------


@dataclass
class JobContext:
    """What a job builds from the environment: settings, its own engine, a Slack client if any."""

    settings: Settings
    engine: Engine

    @classmethod
    def from_env(cls) -> JobContext:
        settings = load_settings()
        return cls(settings=settings, engine=make_engine(settings.sqlalchemy_url))


def advice_for(error: BaseException | str) -> str:
    """What to try next, from the error's text."""
    text = str(error).lower()
    if "out of memory" in text or "cuda oom" in text or "signal 9" in text:
        return "Out of memory: retry with a smaller batch_tokens or max_len (or a smaller base model)."
    if "timeout" in text or "timed out" in text or "s limit" in text:
        return "The job ran past FTBOT_JOB_TIMEOUT: train fewer epochs, cap max_steps, or raise the timeout."
    if "no such file" in text or "not a local folder" in text or "repository not found" in text:
        return "The base model could not be loaded: check base_model / FTBOT_BASE_MODEL."
    return "See the worker's log for the traceback; fix the cause and press Train again."


class _Heartbeat:
    """Writes the run's heartbeat every few seconds so the reconciler can tell a dead worker."""

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine, self.run_id = engine, run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{run_id}")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                with session_scope(self.engine) as session:
                    run = session.get(TrainingRun, self.run_id)
                    if run is not None:
                        run.heartbeat_at = utcnow()
                        session.add(run)
            except Exception:  # a missed beat is harmless; the next one retries
                log.warning("heartbeat failed", exc_info=True)


class _ProgressReporter:
    """Stores progress on the run (and RQ's job.meta) and refreshes Slack at most every interval."""

    def __init__(self, ctx: JobContext, run_id: int) -> None:
        self.ctx, self.run_id = ctx, run_id
        self.client = notify.client_for(ctx.settings)
        self._last_db = self._last_slack = 0.0

    def __call__(self, progress: Progress) -> None:

        now = time.monotonic()
        if now - self._last_db < 2.0 and progress.step < progress.total_steps:
            return
        self._last_db = now
        data = {
            "epoch": progress.epoch,
            "step": progress.step,
            "total_steps": progress.total_steps,
            "loss": round(progress.loss, 4),
            "tokens_per_s": round(progress.tokens_per_s, 1),
            "eta_s": round(progress.eta_s, 1),
        }
        with session_scope(self.ctx.engine) as session:
            run = session.get(TrainingRun, self.run_id)
            assert run is not None
            run.progress_json = json.dumps(data)
            run.heartbeat_at = utcnow()
            session.add(run)
        from rq import get_current_job

        job = get_current_job()
        if job is not None:
            job.meta["progress"] = data
            job.save_meta()
        if now - self._last_slack >= self.ctx.settings.ftbot_progress_interval:
            self._last_slack = now
            notify.run_status(self.ctx.engine, self.client, self.run_id)


def train_job(run_id: int) -> dict[str, Any]:
    """The training job (runs in the worker's work-horse): train, then register a candidate version.

    Returns:
        ``{"run_id": …, "version": N}`` (RQ keeps it as the job's result).
    """
    from runner import exporting, training

    ctx = JobContext.from_env()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES:
            log.info("run %s is gone or ended; nothing to do", run_id)
            return {"run_id": run_id, "skipped": True}
        project = session.get(Project, run.project_id)
        assert project is not None
        run.status = RunStatus.RUNNING.value
        run.started_at = run.heartbeat_at = utcnow()
        run.worker = f"{socket.gethostname()}:{os.getppid()}"
        run.pid = os.getpid()
        session.add(run)
        session.commit()
        snapshot = datasets.get_snapshot(session, project, run.snapshot_id)
        rows = datasets.snapshot_rows(session, snapshot.id)
        frozen = datasets.snapshot_stats(snapshot)
        instructions = str(frozen.get("instructions", project.instructions))
        task_type = str(frozen.get("task_type", project.task_type))
        config = TrainConfig(**json.loads(run.config_json))
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)
    # Trained on the same records `ftbot export` writes, emails and phone numbers redacted.
    train_rows = [
        exporting.chat_record(task_type, instructions, r, redact=True) for r in rows if r.split == "train"
    ]
    eval_rows = [
        exporting.chat_record(task_type, instructions, r, redact=True) for r in rows if r.split == "eval"
    ]
    partial = partial_dir(ctx.settings, project, run_id)
    shutil.rmtree(partial, ignore_errors=True)  # a previous try's leftovers
    partial.parent.mkdir(parents=True, exist_ok=True)
    from rq import get_current_job

    job = get_current_job()
    # The limit the enqueuer chose (FTBOT_JOB_TIMEOUT where the request was made), less RQ's backstop.
    limit = job.timeout - BACKSTOP_S if job is not None and job.timeout else ctx.settings.ftbot_job_timeout
    deadline = time.monotonic() + limit
    try:
        with _Heartbeat(ctx.engine, run_id):
            try:
                result = training.train(
                    config,
                    train_rows,
                    eval_rows,
                    partial,
                    progress=_ProgressReporter(ctx, run_id),
                    should_stop=lambda: time.monotonic() > deadline,
                )
            except TrainingCancelled as exc:
                raise TrainingTimeout(f"Training ran past its {limit} s limit ({exc})") from exc
        (partial / "ftbot.json").write_text(
            json.dumps({"project": project.name, "run_id": run_id, "snapshot": snapshot.id}, indent=2)
        )
        version = register(ctx, run_id, partial, result.to_dict())
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if not isinstance(exc, TRANSIENT):
            from rq import get_current_job

            job = get_current_job()
            if job is not None:
                job.retries_left = 0  # only transient faults are retried
        raise
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)
    return {"run_id": run_id, "version": version.number}


def register(ctx: JobContext, run_id: int, partial: Path, metrics: dict[str, Any]) -> ModelVersion:
    """Move the finished adapter into ``v<N>/`` and register it as a candidate, all or nothing.

    The folder is renamed into place first (atomic on one filesystem); the version row and the
    run's outcome are then committed together. If that commit fails the folder is removed, so a
    registered version always points at a complete folder and no folder outlives a failed commit.
    """
    for _attempt in range(5):  # another run of the project may take the same number concurrently
        with Session(ctx.engine, expire_on_commit=False) as session:
            run = session.get(TrainingRun, run_id)
            assert run is not None
            project = session.get(Project, run.project_id)
            assert project is not None
            latest = session.exec(
                select(func.max(ModelVersion.number)).where(ModelVersion.project_id == project.id)
            ).one()
            number = (latest or 0) + 1
            final = artifacts_dir(ctx.settings, project) / f"v{number}"
            if final.exists():  # a folder left by a crash between rename and commit
                shutil.rmtree(final)
            partial.rename(final)
            config = json.loads(run.config_json)
            version = ModelVersion(
                project_id=project.id or 0,
                number=number,
                run_id=run_id,
                snapshot_id=run.snapshot_id,
                base_model=config["base_model"],
                status=VersionStatus.CANDIDATE.value,
                artifact_path=str(final),
                config_json=run.config_json,
                metrics_json=json.dumps(metrics),
            )
            session.add(version)
            try:
                session.flush()
                run.version_id = version.id
                run.metrics_json = json.dumps(metrics)
                run.status = RunStatus.FINISHED.value
                run.finished_at = utcnow()
                session.add(run)
                session.commit()
                return version
            except IntegrityError:
                session.rollback()
                final.rename(partial)
    raise RuntimeError(f"could not allocate a version number for run {run_id}")


def on_train_failure(job: Job, connection: Redis, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ failure callback (exception or timeout in the work-horse): record why, and what to try."""
    run_id = int(job.meta.get("run_id", 0))
    ctx = JobContext.from_env()
    retrying = bool(job.retries_left) and isinstance(exc_value, TRANSIENT)
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES:
            return
        if retrying:
            run.status = RunStatus.QUEUED.value
            run.error = f"retrying after a transient fault: {exc_value}"
            session.add(run)
        else:
            message = f"{exc_type.__name__}: {exc_value}"[:2000]
            _finish(session, run, RunStatus.FAILED, error=message, advice=advice_for(message))
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)


def on_train_stopped(job: Job, connection: Redis) -> None:
    """RQ stopped callback (Cancel pressed; the work-horse was killed): cancelled, partial files gone."""
    run_id = int(job.meta.get("run_id", 0))
    mark_ended(run_id, RunStatus.CANCELLED, "Cancelled while training.")


def mark_ended(run_id: int, status: RunStatus, error: str, advice: str | None = None) -> None:
    """Record a run's end from outside its job (worker parent, callbacks) and clean up after it."""
    ctx = JobContext.from_env()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES:
            return
        project = session.get(Project, run.project_id)
        _finish(session, run, status, error=error, advice=advice)
    if project is not None:
        shutil.rmtree(partial_dir(ctx.settings, project, run_id), ignore_errors=True)
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)


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
        select(TrainingRun).where(
            col(TrainingRun.status).in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value])
        )
    ).all()
    for run in open_runs:
        job = _fetch(connection, run.rq_job_id)
        status = job.get_status() if job is not None else None
        heartbeat = run.heartbeat_at
        if heartbeat is not None and heartbeat.tzinfo is None:  # SQLite returns naive UTC
            from datetime import UTC

            heartbeat = heartbeat.replace(tzinfo=UTC)
        if connection is not None and run.rq_job_id and job is None:
            _finish(
                session,
                run,
                RunStatus.FAILED,
                error="The job is no longer in Redis (restarted or expired).",
                advice="Press Train again.",
            )
        elif status == JobStatus.FAILED:
            _finish(
                session,
                run,
                RunStatus.FAILED,
                error="The job failed in the worker.",
                advice=advice_for(str(getattr(job, "exc_info", "") or "")),
            )
        elif status in (JobStatus.STOPPED, JobStatus.CANCELED):
            _finish(session, run, RunStatus.CANCELLED, error="Stopped.")
        elif run.status == RunStatus.RUNNING.value and heartbeat is not None and heartbeat < stale_before:
            _finish(
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
        select(TrainingRun).where(
            col(TrainingRun.status).in_([RunStatus.FAILED.value, RunStatus.CANCELLED.value])
        )
    ).all():
        project = session.get(Project, run.project_id)
        if project is not None:
            shutil.rmtree(partial_dir(settings, project, run.id or 0), ignore_errors=True)
    return changed


def runs(session: Session, project: Project) -> list[TrainingRun]:
    return list(
        session.exec(
            select(TrainingRun)
            .where(TrainingRun.project_id == project.id)
            .order_by(col(TrainingRun.id).desc())
        ).all()
    )


def versions(session: Session, project: Project) -> list[ModelVersion]:
    return list(
        session.exec(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(col(ModelVersion.number))
        ).all()
    )
