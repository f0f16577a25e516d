"""Training runs: request one (snapshot, record, enqueue), cancel one, list them, and end them.

A run row is the truth about a training job; the RQ job only carries its id.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from redis import Redis, RedisError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core import basemodels
from runner.core.basemodels import BaseModelMissing
from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError, TrainingRequestError
from runner.core.models import TERMINAL_RUN_STATUSES, Project, RunStatus, TrainingRun, utcnow
from runner.core.policy import Action, Person, perform
from runner.core.trainconfig import TrainConfig
from runner.data import gates, projects, snapshots
from runner.jobs.queues import enqueue, eval_job_id, fetch_job, train_job_id


def artifacts_dir(settings: Settings, project: Project) -> Path:
    return Path(settings.ftbot_data_dir) / "artifacts" / project.name


def partial_dir(settings: Settings, project: Project, run_id: int) -> Path:
    """Where a run writes before its version is registered (removed if the run does not finish)."""
    return artifacts_dir(settings, project) / f".run-{run_id}.partial"


def resolve_config(settings: Settings, overrides: dict[str, str]) -> TrainConfig:
    """The run's config: defaults, ``FTBOT_BASE_MODEL``, then the user's ``key=value`` overrides.

    ``base_model`` (from either) must be a pulled model name, a Hugging Face id or a folder under
    ``FTBOT_MODELS_DIR`` or ``FTBOT_DATA_DIR``: never a URL or any other path. A name or folder must
    be there already (the workers share ``FTBOT_MODELS_DIR``), so a missing one is refused now, with
    the command that pulls it, rather than failing on a worker later.

    Raises:
        TrainingRequestError: no base model, unknown keys or invalid values (all listed, briefly), or a
            model that is not pulled.
    """
    base_model = overrides.get("base_model") or settings.ftbot_base_model
    if not base_model:
        raise TrainingRequestError(
            "No base model: set FTBOT_BASE_MODEL or pass base_model=<name or org/name>."
        )
    try:
        config = TrainConfig.from_overrides(
            {"base_model": base_model}, overrides, local_roots=settings.model_roots
        )
        basemodels.resolve(config.base_model, settings.ftbot_models_dir)
    except (ValueError, BaseModelMissing) as exc:
        raise TrainingRequestError(str(exc)) from exc
    return config


def parse_overrides(words: list[str]) -> dict[str, str]:
    """``["epochs=3", "lr=1e-4"]`` → ``{"epochs": "3", "lr": "1e-4"}``.

    Raises:
        TrainingRequestError: a word is not ``key=value``.
    """
    bad = [w for w in words if "=" not in w or w.startswith("=")]
    if bad:
        raise TrainingRequestError(f"Use key=value for training options; not understood: {' '.join(bad)}")
    return dict(w.split("=", 1) for w in words)


def create_run(
    session: Session,
    *,
    settings: Settings,
    project: Project,
    overrides: dict[str, str],
    requested_by: str,
    require_gates: bool = True,
) -> TrainingRun:
    """Snapshot the dataset and record a queued run (its job ids included); nothing is enqueued
    until the caller has committed it (`enqueue_run`).

    Args:
        require_gates: refuse when the dataset's readiness gates do not all pass.

    Raises:
        TrainingRequestError: gates failing, bad options, or no usable example.
    """
    config = resolve_config(settings, overrides)
    if require_gates:
        stats = gates.project_stats(session, project)
        failing = [g.name for g in stats.gates if not g.passed]
        if failing:
            raise TrainingRequestError(
                f"{project.name} is not ready to train: {', '.join(failing)} "
                f"(see `/finetune status {project.name}`)."
            )
    try:
        snapshot, _ = snapshots.build_snapshot(session, project, created_by=requested_by)
    except DatasetError as exc:
        raise TrainingRequestError(str(exc)) from exc
    assert project.id is not None
    run = TrainingRun(
        project_id=project.id,
        snapshot_id=snapshot.id,
        config=config.to_dict(),
        requested_by=requested_by,
        channel_id=project.channel_id if project.root_ts else None,
        thread_ts=project.root_ts,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    run.rq_job_id, run.eval_job_id = train_job_id(run.id), eval_job_id(run.id)
    return run


def enqueue_run(engine: Engine, run: TrainingRun, *, settings: Settings, connection: Redis) -> None:
    """Enqueue a committed run; when Redis cannot take it, the run fails with the reason.

    Raises:
        TrainingRequestError: the job could not be enqueued (the run is marked failed).
    """
    assert run.id is not None
    try:
        enqueue(run.id, run.project_id, settings=settings, connection=connection)
    except RedisError as exc:
        reason = f"The job queue (Redis) could not take the run: {type(exc).__name__}: {exc}"
        with session_scope(engine) as session:
            stored = session.get(TrainingRun, run.id)
            if stored is not None:
                advice = "Check REDIS_URL and that Redis runs, then train again."
                finish(session, stored, RunStatus.FAILED, error=reason, advice=advice)
        raise TrainingRequestError(f"{reason}. Nothing will train; try again once Redis is back.") from exc


def cancel(session: Session, run: TrainingRun, *, connection: Redis | None) -> TrainingRun:
    """Stop a queued or running run (RQ's stop-job command kills a started work-horse).

    A started job is marked cancelled by its ``on_stopped`` callback in the worker, which also
    removes its partial artifacts; a queued one is cancelled here.

    Raises:
        TrainingRequestError: the run already ended.
    """
    if run.status in TERMINAL_RUN_STATUSES:
        raise TrainingRequestError(f"Run {run.id} already {run.status}.")
    job = fetch_job(connection, run.rq_job_id)
    if job is not None and connection is not None and job.get_status() == JobStatus.STARTED:
        send_stop_job_command(connection, job.id, serializer=JSONSerializer)
        return run
    if job is not None:
        with contextlib.suppress(InvalidJobOperation):  # it ended between the check and now
            job.cancel()
    finish(session, run, RunStatus.CANCELLED, error="Cancelled before it started.")
    return run


def finish(
    session: Session,
    run: TrainingRun,
    status: RunStatus,
    *,
    error: str | None = None,
    advice: str | None = None,
) -> None:
    run.status = status
    run.error = error
    run.advice = advice
    run.finished_at = utcnow()
    session.add(run)


def runs(session: Session, project: Project) -> list[TrainingRun]:
    return list(
        session.exec(
            select(TrainingRun)
            .where(TrainingRun.project_id == project.id)
            .order_by(col(TrainingRun.id).desc())
        ).all()
    )


def request_training(
    engine: Engine,
    settings: Settings,
    person: Person,
    *,
    project_name: str,
    overrides: dict[str, str],
    connection: Redis | None,
    channel_id: str | None = None,
    require_gates: bool = True,
) -> TrainingRun:
    """A person asks to train a project: decided and audited (`runner.core.policy.perform`), the run
    recorded and committed, then enqueued (unless `connection` is None: ``ftbot train --inline``).

    Args:
        channel_id: where to report when the project has no thread (the channel it was asked in).

    Raises:
        NotAllowed: the person may not train the project.
        TrainingRequestError, DatasetError: the request cannot be queued (the message says why).
    """

    def create(session: Session, project: Project) -> TrainingRun:
        run = create_run(
            session,
            settings=settings,
            project=project,
            overrides=overrides,
            requested_by=person.user_id,
            require_gates=require_gates,
        )
        if run.channel_id is None and channel_id:
            run.channel_id = channel_id
        return run

    run = perform(
        engine,
        settings,
        Action.TRAIN,
        person,
        load=lambda session: projects.get_project(session, project_name),
        work=create,
        target=" ".join(f"{k}={v}" for k, v in overrides.items()),
        detail=lambda created: f"run {created.id}",
    )
    if connection is not None:
        enqueue_run(engine, run, settings=settings, connection=connection)
    return run


def request_cancel(
    engine: Engine, settings: Settings, person: Person, run_id: int, *, connection: Redis | None
) -> None:
    """A person asks to cancel run `run_id`: decided (who started it, owners, trainers) and audited.

    Raises:
        NotAllowed: the person may not.
        TrainingRequestError: no such run, or it already ended.
    """

    def load(session: Session) -> Project:
        run = session.get(TrainingRun, run_id)
        project = session.get(Project, run.project_id) if run else None
        if run is None or project is None:
            raise TrainingRequestError(f"There is no run {run_id}.")
        return project

    def requested_by(session: Session) -> str | None:
        run = session.get(TrainingRun, run_id)
        return run.requested_by if run else None

    def stop(session: Session, project: Project) -> None:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        cancel(session, run, connection=connection)

    perform(
        engine,
        settings,
        Action.CANCEL,
        person,
        load=load,
        work=stop,
        target=f"run {run_id}",
        requested_by=requested_by,
    )
