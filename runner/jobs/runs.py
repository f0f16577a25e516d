"""Training runs: request one (snapshot, record, enqueue), cancel one, list them, and end them.

A run row is the truth about a training job; the RQ job only carries its id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
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
from runner.core.models import (
    TERMINAL_RUN_STATUSES,
    Project,
    RunStatus,
    Snapshot,
    Split,
    TrainingRun,
    utcnow,
)
from runner.core.policy import Action, Person, perform
from runner.core.trainconfig import CHECKPOINT_FILE, TrainConfig
from runner.data import exporting, gates, projects, snapshots
from runner.jobs import multinode, preflight
from runner.jobs.queues import enqueue, eval_job_id, fetch_job, train_job_id, train_queue_for

PAUSE = "pause"  # TrainingRun.control: the running job checkpoints and stops at its next step


def artifacts_dir(settings: Settings, project: Project) -> Path:
    return Path(settings.ftbot_data_dir) / "artifacts" / project.name


def partial_dir(settings: Settings, project: Project, run_id: int) -> Path:
    """Where a run writes before its version is registered (removed if the run does not finish)."""
    return artifacts_dir(settings, project) / f".run-{run_id}.partial"


def checkpoint_dir(settings: Settings, project: Project, run_id: int) -> Path:
    """Where a run keeps its last checkpoint (kept while it is paused, removed once it ends)."""
    return artifacts_dir(settings, project) / f".run-{run_id}.checkpoint"


def launch_dir(settings: Settings, project: Project, run_id: int) -> Path:
    """A multi-process run's work folder (its data, settings, events and torchrun's log)."""
    return artifacts_dir(settings, project) / f".run-{run_id}.launch"


def scratch_dirs(settings: Settings, project: Project, run_id: int) -> list[Path]:
    """Every folder a run writes before its version is registered (removed when it ends otherwise)."""
    return [
        partial_dir(settings, project, run_id),
        checkpoint_dir(settings, project, run_id),
        launch_dir(settings, project, run_id),
    ]


def has_checkpoint(settings: Settings, project: Project, run_id: int) -> bool:
    return (checkpoint_dir(settings, project, run_id) / CHECKPOINT_FILE).exists()


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
        estimate=preflight_estimate(session, settings, project, snapshot, config).to_dict(),
    )
    try:  # a job no worker class can run is refused now, not left queued
        train_queue(settings, run)
    except ValueError as exc:
        raise TrainingRequestError(str(exc)) from exc
    session.add(run)
    session.flush()
    assert run.id is not None
    run.rq_job_id, run.eval_job_id = train_job_id(run.id), eval_job_id(run.id)
    return run


def preflight_estimate(
    session: Session, settings: Settings, project: Project, snapshot: Snapshot, config: TrainConfig
) -> preflight.Estimate:
    """The run's tokens, time, GPU-hours and memory (`runner.jobs.preflight`), from the snapshot's
    training records, the base model's shape when it is on disk, and past runs of the same base
    model and process count."""
    frozen = snapshot.stats
    instructions = str(frozen.get("instructions", project.instructions))
    task_type = str(frozen.get("task_type", project.task_type))
    records = [
        exporting.chat_record(task_type, instructions, row, redact=True)
        for row in snapshots.snapshot_rows(session, snapshot.id)
        if row.split == Split.TRAIN
    ]
    finished = session.exec(
        select(TrainingRun)
        .where(TrainingRun.status == RunStatus.FINISHED)
        .order_by(col(TrainingRun.id).desc())
        .limit(100)
    ).all()
    history = [
        run.metrics
        for run in finished
        if run.metrics
        and run.config.get("base_model") == config.base_model
        and int(run.config.get("procs", 1)) == config.procs
    ]
    found = preflight.local_config_json(config.base_model, settings.ftbot_models_dir)
    shape = preflight.model_shape(found) if found else None
    return preflight.estimate(config, records, history=history, shape=shape)


def train_queue(settings: Settings, run: TrainingRun) -> str:
    """The train queue of the run's hardware class, from its processes and estimated memory.

    Raises:
        ValueError: no configured class can run it.
    """
    memory = (run.estimate or {}).get("memory_bytes")
    config = TrainConfig(**run.config)
    problem = multinode.refusal(settings, config)
    if problem:
        raise ValueError(problem)
    if config.nodes > 1:  # the head node's queue (torchrun), or any train queue (a TrainJob's launcher)
        return multinode.train_queue(settings, train_queue_for(settings, procs=1, memory_bytes=None))
    return train_queue_for(settings, procs=config.procs, memory_bytes=memory)


def enqueue_run(engine: Engine, run: TrainingRun, *, settings: Settings, connection: Redis) -> None:
    """Enqueue a committed run; when Redis cannot take it, the run fails with the reason.

    Raises:
        TrainingRequestError: the job could not be enqueued (the run is marked failed).
    """
    assert run.id is not None
    try:
        enqueue(
            run.id,
            run.project_id,
            settings=settings,
            connection=connection,
            attempt=run.attempt,
            train_queue=train_queue(settings, run),
        )
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


def pause(session: Session, run: TrainingRun, *, connection: Redis | None) -> TrainingRun:
    """Pause a run: a running job is asked to checkpoint and stop at its next step (it marks the run
    paused and frees its worker); a queued job is taken off the queue and the run paused at once.

    Raises:
        TrainingRequestError: the run is neither queued nor running.
    """
    if run.status == RunStatus.RUNNING:
        run.control = PAUSE
        session.add(run)
        return run
    if run.status != RunStatus.QUEUED:
        raise TrainingRequestError(
            f"Run {run.id} is {run.status}: only a queued or running run can be paused."
        )
    job = fetch_job(connection, run.rq_job_id)
    if job is not None and connection is not None and job.get_status() == JobStatus.STARTED:
        run.control = PAUSE  # its job started a moment ago: it pauses at its first step
        session.add(run)
        return run
    if job is not None:
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()
    run.status = RunStatus.PAUSED
    run.control = None
    session.add(run)
    return run


def prepare_resume(session: Session, run: TrainingRun, *, note: str) -> TrainingRun:
    """Record a run as queued again with new job ids (the caller enqueues it after the commit, with
    `enqueue_run`); its job goes on from the run's checkpoint when there is one.

    Args:
        note: what the status message says about it (who resumed it, or why it resumed itself).
    """
    assert run.id is not None
    run.attempt += 1
    run.rq_job_id, run.eval_job_id = train_job_id(run.id, run.attempt), eval_job_id(run.id, run.attempt)
    run.status = RunStatus.QUEUED
    run.control = None
    run.error = run.advice = None
    run.finished_at = None
    run.heartbeat_at = utcnow()  # when it was queued again: the reconciler's grace counts from here
    run.note = note
    session.add(run)
    return run


def resume_from(run: TrainingRun) -> str:
    return (
        f"step {run.checkpoint_step}" if run.checkpoint_step is not None else "the start (no checkpoint yet)"
    )


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
    run.control = None
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

    load, requested_by = _run_loader(run_id)

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


def _run_loader(run_id: int) -> tuple[Callable[[Session], Project], Callable[[Session], str | None]]:
    """``load`` and ``requested_by`` for `perform` on run `run_id`."""

    def load(session: Session) -> Project:
        run = session.get(TrainingRun, run_id)
        project = session.get(Project, run.project_id) if run else None
        if run is None or project is None:
            raise TrainingRequestError(f"There is no run {run_id}.")
        return project

    def requested_by(session: Session) -> str | None:
        run = session.get(TrainingRun, run_id)
        return run.requested_by if run else None

    return load, requested_by


def request_pause(
    engine: Engine, settings: Settings, person: Person, run_id: int, *, connection: Redis | None
) -> None:
    """A person asks to pause run `run_id` (who started it, owners, trainers), audited.

    Raises:
        NotAllowed: the person may not.
        TrainingRequestError: no such run, or it is not queued or running.
    """
    load, requested_by = _run_loader(run_id)

    def work(session: Session, project: Project) -> None:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        pause(session, run, connection=connection)

    perform(
        engine,
        settings,
        Action.PAUSE,
        person,
        load=load,
        work=work,
        target=f"run {run_id}",
        requested_by=requested_by,
    )


def request_resume(
    engine: Engine, settings: Settings, person: Person, run_id: int, *, connection: Redis
) -> TrainingRun:
    """A person asks to resume paused run `run_id`: audited, queued again, then enqueued.

    Raises:
        NotAllowed: the person may not.
        TrainingRequestError: no such run, it is not paused, or Redis cannot take it.
    """
    load, requested_by = _run_loader(run_id)

    def work(session: Session, project: Project) -> TrainingRun:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        if run.status != RunStatus.PAUSED:
            raise TrainingRequestError(f"Run {run_id} is {run.status}: only a paused run can be resumed.")
        return prepare_resume(session, run, note=f"Resumed from {resume_from(run)} by <@{person.user_id}>.")

    run = perform(
        engine,
        settings,
        Action.RESUME,
        person,
        load=load,
        work=work,
        target=f"run {run_id}",
        requested_by=requested_by,
        detail=lambda resumed: f"attempt {resumed.attempt}",
    )
    enqueue_run(engine, run, settings=settings, connection=connection)
    return run


def auto_resume(session: Session, run: TrainingRun, *, settings: Settings, why: str) -> bool:
    """Queue again a run whose worker died, when it has a checkpoint and resumes left; the caller
    enqueues it after the commit (`enqueue_run`). False: the caller fails it as before.

    Args:
        why: what happened, in a sentence fragment (``the worker stopped reporting``).
    """
    project = session.get(Project, run.project_id)
    if project is None or run.status != RunStatus.RUNNING:
        return False
    if run.auto_resumes >= settings.ftbot_resume_attempts or not has_checkpoint(
        settings, project, run.id or 0
    ):
        return False
    run.auto_resumes += 1
    prepare_resume(
        session,
        run,
        note=f"Resumed from {resume_from(run)} after {why} "
        f"(automatic resume {run.auto_resumes} of {settings.ftbot_resume_attempts}).",
    )
    return True
