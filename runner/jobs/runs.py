"""Training runs: request one (snapshot and estimate, then confirm: record and enqueue), cancel one,
list them with what they took against their estimate, and end them.

A training request row holds what was shown for confirmation until someone confirms or cancels it; a
run row is the truth about a training job; the RQ job only carries its id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from redis import Redis, RedisError
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import update
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
    RequestStatus,
    RunStatus,
    Snapshot,
    Split,
    TrainingRequest,
    TrainingRun,
    utcnow,
)
from runner.core.policy import Action, Person, perform
from runner.core.trainconfig import CHECKPOINT_FILE, TrainConfig
from runner.data import exporting, gates, projects, snapshots
from runner.jobs import budget, multinode, preflight
from runner.jobs.queues import (
    TRAIN_QUEUE,
    enqueue,
    eval_job_id,
    fetch_job,
    train_class_for,
    train_job_id,
    train_queue_for,
)
from runner.slack import payloads

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


@dataclass(frozen=True)
class Prepared:
    """What a training request trains on: its snapshot, resolved config and preflight estimate."""

    snapshot: Snapshot
    config: TrainConfig
    estimate: preflight.Estimate


def prepare(
    session: Session,
    *,
    settings: Settings,
    project: Project,
    overrides: dict[str, str],
    requested_by: str,
    require_gates: bool = True,
) -> Prepared:
    """Check the request, snapshot the dataset and estimate the run (`runner.jobs.preflight`).

    Args:
        require_gates: refuse when the dataset's readiness gates do not all pass.

    Raises:
        TrainingRequestError: gates failing, bad options, no usable example, or no worker class
            that can run it.
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
    try:  # a job no worker class can run is refused now, not left queued
        estimate = preflight_estimate(session, settings, project, snapshot, config)
        draft = TrainingRun(
            project_id=project.id or 0,
            snapshot_id=snapshot.id,
            config=config.to_dict(),
            estimate=estimate.to_dict(),
        )
        train_queue(settings, draft)  # the queue its Confirm will enqueue it on
    except ValueError as exc:
        raise TrainingRequestError(str(exc)) from exc
    return Prepared(snapshot=snapshot, config=config, estimate=estimate)


def new_run(
    session: Session,
    project: Project,
    *,
    snapshot_id: str,
    config: dict[str, Any],
    estimate: dict[str, Any],
    requested_by: str,
    approved_by: str | None = None,
) -> TrainingRun:
    """Record a queued run (its job ids included); nothing is enqueued until the caller has committed
    it (`enqueue_run`)."""
    assert project.id is not None
    run = TrainingRun(
        project_id=project.id,
        snapshot_id=snapshot_id,
        config=config,
        requested_by=requested_by,
        channel_id=project.channel_id if project.root_ts else None,
        thread_ts=project.root_ts,
        estimate=estimate,
        approved_by=approved_by,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    run.rq_job_id, run.eval_job_id = train_job_id(run.id), eval_job_id(run.id)
    return run


def create_run(
    session: Session,
    *,
    settings: Settings,
    project: Project,
    overrides: dict[str, str],
    requested_by: str,
    require_gates: bool = True,
) -> TrainingRun:
    """Snapshot the dataset and record a queued run at once, without a confirmation (`prepare`,
    then `new_run`); nothing is enqueued until the caller has committed it (`enqueue_run`).

    Raises:
        TrainingRequestError: gates failing, bad options, or no usable example.
    """
    found = prepare(
        session,
        settings=settings,
        project=project,
        overrides=overrides,
        requested_by=requested_by,
        require_gates=require_gates,
    )
    return new_run(
        session,
        project,
        snapshot_id=found.snapshot.id,
        config=found.config.to_dict(),
        estimate=found.estimate.to_dict(),
        requested_by=requested_by,
    )


def preflight_estimate(
    session: Session, settings: Settings, project: Project, snapshot: Snapshot, config: TrainConfig
) -> preflight.Estimate:
    """The run's tokens, time, GPU-hours and memory (`runner.jobs.preflight`), from the snapshot's
    training records, the base model's shape when it is on disk, and past runs of the same base
    model and process count on the hardware class it is routed to (any worker's, without classes).

    Raises:
        ValueError: no configured hardware class can run it.
    """
    frozen = snapshot.stats
    instructions = str(frozen.get("instructions", project.instructions))
    task_type = str(frozen.get("task_type", project.task_type))
    records = [
        exporting.chat_record(task_type, instructions, row, redact=True)
        for row in snapshots.snapshot_rows(session, snapshot.id)
        if row.split == Split.TRAIN
    ]
    found = preflight.local_config_json(config.base_model, settings.ftbot_models_dir)
    shape = preflight.model_shape(found) if found else None
    longest = max(preflight.example_tokens(records, config.max_len), default=1)
    memory = preflight.memory_bytes(config, shape, longest) if shape else None
    hardware_class = train_class_for(settings, procs=config.procs, memory_bytes=memory)
    finished = session.exec(
        select(TrainingRun)
        .where(TrainingRun.status == RunStatus.FINISHED)
        .order_by(col(TrainingRun.id).desc())
        .limit(200)
    ).all()
    history = [
        run.metrics
        for run in finished
        if run.metrics
        and run.config.get("base_model") == config.base_model
        and int(run.config.get("procs", 1)) == config.procs
        and int(run.config.get("nodes", 1) or 1) == config.nodes
        and (hardware_class is None or run.hardware_class == hardware_class.name)
    ]
    return preflight.estimate(
        config,
        records,
        history=history,
        shape=shape,
        hardware_class=hardware_class.name if hardware_class else None,
        queue=hardware_class.queue if hardware_class else TRAIN_QUEUE,
    )


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


COMPARED = ("seconds", "tokens", "tokens_per_s", "gpu_hours")


def actual(run: TrainingRun) -> dict[str, Any]:
    """What a run really took, in the estimate's terms (None where it has no figure yet): the training
    job's wall time, real tokens and tokens/s (its metrics), its GPU-hours (`budget.actual_gpu_hours`,
    once it ended), the hardware class it ran on, and the job's time from start to end."""
    metrics = run.metrics or {}
    job_seconds = budget.job_seconds(run)
    ended = run.status in TERMINAL_RUN_STATUSES
    return {
        "seconds": metrics.get("wall_time_s"),
        "tokens": metrics.get("train_tokens"),
        "tokens_per_s": metrics.get("tokens_per_s"),
        "gpu_hours": round(budget.actual_gpu_hours(run), 6) if ended else None,
        "hardware_class": run.hardware_class,
        "job_seconds": round(job_seconds, 1) if job_seconds is not None else None,
    }


def actual_vs_estimate(run: TrainingRun) -> dict[str, float]:
    """``actual / estimate`` of each figure both have (1.25: it took a quarter more than estimated)."""
    done, guessed = actual(run), run.estimate or {}
    ratios = {}
    for key in COMPARED:
        a, e = done.get(key), guessed.get(key)
        if isinstance(a, int | float) and isinstance(e, int | float) and a > 0 and e > 0:
            ratios[key] = round(a / e, 3)
    return ratios


def runs(session: Session, project: Project) -> list[TrainingRun]:
    return list(
        session.exec(
            select(TrainingRun)
            .where(TrainingRun.project_id == project.id)
            .order_by(col(TrainingRun.id).desc())
        ).all()
    )


def propose_training(
    engine: Engine,
    settings: Settings,
    person: Person,
    *,
    project_name: str,
    overrides: dict[str, str],
    channel_id: str | None = None,
    require_gates: bool = True,
) -> TrainingRequest:
    """A person asks to train a project: decided and audited (`runner.core.policy.perform`), the
    dataset snapshotted and the run estimated, and the request recorded, pending, for a Confirm
    (`confirm_training`) or a Cancel (`cancel_request`). Nothing is queued yet.

    Args:
        channel_id: where to report when the project has no thread (the channel it was asked in).

    Raises:
        NotAllowed: the person may not train the project.
        TrainingRequestError, DatasetError: the request cannot be queued (the message says why).
    """

    def create(session: Session, project: Project) -> TrainingRequest:
        found = prepare(
            session,
            settings=settings,
            project=project,
            overrides=overrides,
            requested_by=person.user_id,
            require_gates=require_gates,
        )
        assert project.id is not None
        spend = budget.usage(session, settings, project, found.estimate.gpu_hours)
        request = TrainingRequest(
            project_id=project.id,
            snapshot_id=found.snapshot.id,
            config=found.config.to_dict(),
            estimate=found.estimate.to_dict(),
            budget=spend.to_dict() if spend else None,
            requested_by=person.user_id,
            channel_id=project.channel_id if project.root_ts else channel_id,
            thread_ts=project.root_ts,
        )
        session.add(request)
        session.flush()
        return request

    return perform(
        engine,
        settings,
        Action.TRAIN,
        person,
        load=lambda session: projects.get_project(session, project_name),
        work=create,
        target=" ".join(f"{k}={v}" for k, v in overrides.items()),
        detail=lambda created: f"request {created.id}, awaiting confirmation",
    )


class RequestDecided(TrainingRequestError):
    """The training request was confirmed or cancelled already."""


class OverBudget(TrainingRequestError):
    """The run would take its project over its GPU-hour budget: an admin must approve it."""

    def __init__(self, message: str, spend: budget.Budget) -> None:
        super().__init__(message)
        self.spend = spend


def _loader(
    model: type[TrainingRun] | type[TrainingRequest], row_id: int, missing: str
) -> tuple[Callable[[Session], Project], Callable[[Session], str | None]]:
    """``load`` and ``requested_by`` for `perform` on the run or training request `row_id`."""

    def load(session: Session) -> Project:
        row = cast("TrainingRun | TrainingRequest | None", session.get(model, row_id))
        project = session.get(Project, row.project_id) if row else None
        if row is None or project is None:
            raise TrainingRequestError(missing)
        return project

    def requested_by(session: Session) -> str | None:
        row = cast("TrainingRun | TrainingRequest | None", session.get(model, row_id))
        return row.requested_by if row else None

    return load, requested_by


def _request_loader(request_id: int) -> tuple[Callable[[Session], Project], Callable[[Session], str | None]]:
    return _loader(TrainingRequest, request_id, f"There is no training request {request_id}.")


def _decide_request(session: Session, request: TrainingRequest, status: RequestStatus, by: str) -> None:
    """Move a pending request to `status`, as a compare-and-set: only one decision ever lands.

    Raises:
        RequestDecided: it was confirmed or cancelled already (by this transaction's rival, too).
    """
    moved = session.execute(
        update(TrainingRequest)
        .where(col(TrainingRequest.id) == request.id, col(TrainingRequest.status) == RequestStatus.PENDING)
        .values(status=status, decided_by=by, decided_at=utcnow())
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(request)
        raise RequestDecided(already_decided(request))


def already_decided(request: TrainingRequest) -> str:
    if request.status == RequestStatus.CONFIRMED:
        return (
            f"This training was confirmed already (by <@{request.decided_by}>): it is run {request.run_id}."
        )
    return f"This training request was cancelled (by <@{request.decided_by}>); nothing was queued."


def confirm_training(
    engine: Engine,
    settings: Settings,
    person: Person,
    request_id: int,
    *,
    connection: Redis | None,
    approve: bool = False,
) -> TrainingRun:
    """Confirm a training request: its run recorded with the estimate shown and committed, then
    enqueued (unless `connection` is None: ``ftbot train --inline``). Confirming is a
    compare-and-set on the request, so two clicks record one run.

    Args:
        approve: an admin approves a run over the project's budget (`Action.APPROVE`, audited as
            such and recorded on the run); otherwise who asked or the project owner confirms it.

    Raises:
        NotAllowed: the person may not.
        RequestDecided: it was confirmed or cancelled already.
        OverBudget: it would take the project over its budget and this is not an approval (the
            request's budget figures are brought up to date).
        TrainingRequestError: Redis cannot take it (the run is failed).
    """
    load, requested_by = _request_loader(request_id)

    def confirm(session: Session, project: Project) -> TrainingRun:
        request = session.get(TrainingRequest, request_id)
        assert request is not None
        if request.status != RequestStatus.PENDING:
            raise RequestDecided(already_decided(request))
        # One confirmation per project at a time (PostgreSQL; SQLite's writers take turns anyway), so
        # two runs confirmed together cannot both fit under a budget only one of them fits under.
        session.exec(select(Project.id).where(col(Project.id) == project.id).with_for_update()).all()
        spend = budget.usage(session, settings, project, float(request.estimate.get("gpu_hours", 0.0)))
        if spend is not None and spend.over and not approve:
            raise OverBudget(over_budget_text(project.name, spend), spend)
        _decide_request(session, request, RequestStatus.CONFIRMED, person.user_id)
        run = new_run(
            session,
            project,
            snapshot_id=request.snapshot_id,
            config=request.config,
            estimate=request.estimate,
            requested_by=request.requested_by,
            approved_by=person.user_id if approve and spend is not None and spend.over else None,
        )
        run.channel_id, run.thread_ts = request.channel_id, request.thread_ts
        run.status_ts = request.message_ts  # the message that asked becomes the run's status message
        request.run_id = run.id
        request.budget = spend.to_dict() if spend else None
        session.add_all([run, request])
        return run

    def detail(run: TrainingRun) -> str:
        spend = (run.estimate or {}).get("gpu_hours", 0)
        return f"run {run.id}, estimate {spend} GPU-h" + (" over budget, approved" if run.approved_by else "")

    try:
        run = perform(
            engine,
            settings,
            Action.APPROVE if approve else Action.CONFIRM,
            person,
            load=load,
            work=confirm,
            target=f"request {request_id}",
            detail=detail,
            requested_by=requested_by,
        )
    except OverBudget as exc:
        with session_scope(engine) as session:
            stored = session.get(TrainingRequest, request_id)
            if stored is not None and stored.status == RequestStatus.PENDING:
                stored.budget = exc.spend.to_dict()
                session.add(stored)
        raise
    if connection is not None:
        enqueue_run(engine, run, settings=settings, connection=connection)
    return run


def over_budget_text(project_name: str, spend: budget.Budget) -> str:
    return (
        f"This run would take *{project_name}* to {payloads.gpu_hours(spend.total)} of its "
        f"{payloads.gpu_hours(spend.limit)} budget for {spend.window}: an admin must approve it."
    )


def run_of_request(engine: Engine, request_id: int) -> int | None:
    """The run a training request was confirmed into, if it was."""
    with session_scope(engine) as session:
        request = session.get(TrainingRequest, request_id)
        return request.run_id if request is not None else None


def cancel_request(engine: Engine, settings: Settings, person: Person, request_id: int) -> TrainingRequest:
    """Cancel a pending training request (who asked, owners, trainers), audited; nothing is queued.

    Raises:
        NotAllowed: the person may not.
        RequestDecided: it was confirmed or cancelled already.
    """
    load, requested_by = _request_loader(request_id)

    def cancel_it(session: Session, project: Project) -> TrainingRequest:
        request = session.get(TrainingRequest, request_id)
        assert request is not None
        _decide_request(session, request, RequestStatus.CANCELLED, person.user_id)
        session.refresh(request)
        return request

    return perform(
        engine,
        settings,
        Action.CANCEL,
        person,
        load=load,
        work=cancel_it,
        target=f"request {request_id}",
        requested_by=requested_by,
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
    approve: bool = False,
) -> TrainingRun:
    """Propose and confirm at once, for scripts that have decided already (`propose_training`, then
    `confirm_training` by the same person): each step decided and audited.

    Raises:
        NotAllowed, TrainingRequestError, DatasetError: as the two steps do (`OverBudget` included).
    """
    request = propose_training(
        engine,
        settings,
        person,
        project_name=project_name,
        overrides=overrides,
        channel_id=channel_id,
        require_gates=require_gates,
    )
    assert request.id is not None
    return confirm_training(engine, settings, person, request.id, connection=connection, approve=approve)


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
    return _loader(TrainingRun, run_id, f"There is no run {run_id}.")


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
