"""The job bodies a worker's work-horse runs: train a run, register its version, evaluate it.

They are enqueued by dotted path (``runner.jobs.tasks.train_job``) with a run id; torch and the
training code are imported inside them, so neither the bot nor the worker's parent loads torch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from runner.core import basemodels
from runner.core.config import Settings, load_settings
from runner.core.db import make_engine, session_scope
from runner.core.exceptions import FtbotError, TrainingTimeout
from runner.core.models import (
    TERMINAL_RUN_STATUSES,
    ModelVersion,
    Project,
    RunStatus,
    Split,
    TrainingRun,
    VersionStatus,
    utcnow,
)
from runner.core.trainconfig import Progress, TrainConfig, TrainingCancelled, TrainingPaused
from runner.data import exporting, snapshots
from runner.jobs import hardware, runs
from runner.jobs.queues import BACKSTOP_S, TRANSIENT
from runner.jobs.runs import (
    PAUSE,
    artifacts_dir,
    checkpoint_dir,
    finish,
    launch_dir,
    partial_dir,
    scratch_dirs,
)
from runner.slack import notify

log = logging.getLogger(__name__)

# A job that outlives this is killed by RQ (and reported failed); real QLoRA runs on a 7B model
# take hours, so the default is generous and configurable (FTBOT_JOB_TIMEOUT).
HEARTBEAT_EVERY_S = 10.0


@dataclass
class JobContext:
    """What jobs and RQ callbacks share in one process: settings and one database engine.

    Built once per process (`current`); a forked work-horse builds its own, since database
    connections must not cross a fork.
    """

    settings: Settings
    engine: Engine
    pid: int

    @classmethod
    def current(cls) -> JobContext:
        global _context
        if _context is None or _context.pid != os.getpid():
            settings = load_settings()
            _context = cls(settings=settings, engine=make_engine(settings.sqlalchemy_url), pid=os.getpid())
        return _context


_context: JobContext | None = None
# The hardware class `ftbot worker --gpus N --gpu-mem M` declared (`runner.jobs.worker.run_worker`
# sets it before forking its work-horses); None: the work-horse detects its GPUs.
WORKER_CLASS: str | None = None


def hardware_class(settings: Settings) -> str:
    """The hardware class this process trains as (`runner.jobs.hardware.worker_class`): the one its
    worker declared, else from the GPUs torch sees here (in the work-horse, never the worker's parent).
    """
    if WORKER_CLASS:
        return WORKER_CLASS
    import torch  # the work-horse has loaded it for the training already

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    memory = min((torch.cuda.get_device_properties(i).total_memory for i in range(gpus)), default=0)
    classes = hardware.parse_classes(settings.ftbot_hardware_classes)
    return hardware.worker_class(classes, gpus=gpus, gpu_mem=memory)


def advice_for(error: BaseException | str) -> str:
    """What to try next, from the error's text."""
    text = str(error).lower()
    if "out of memory" in text or "cuda oom" in text or "signal 9" in text:
        return "Out of memory: retry with a smaller batch_tokens or max_len (or a smaller base model)."
    if "timeout" in text or "timed out" in text or "s limit" in text:
        return "The job ran past FTBOT_JOB_TIMEOUT: train fewer epochs, cap max_steps, or raise the timeout."
    if "ftbot models pull" in text:
        return "Pull the base model on the worker host (the command is in the message), then train again."
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
            "plan": progress.plan,
        }
        with session_scope(self.ctx.engine) as session:
            run = session.get(TrainingRun, self.run_id)
            assert run is not None
            run.progress = data
            run.heartbeat_at = utcnow()
            session.add(run)
        job = get_current_job()
        if job is not None:
            job.meta["progress"] = data
            job.save_meta()
        if now - self._last_slack >= self.ctx.settings.ftbot_progress_interval:
            self._last_slack = now
            notify.run_status(self.ctx.engine, self.client, self.run_id)


class _PauseRequest:
    """Polled before every step: has someone asked this run to pause? (At most twice a second.)"""

    EVERY_S = 0.5

    def __init__(self, engine: Engine, run_id: int) -> None:
        self.engine, self.run_id = engine, run_id
        self._last = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.EVERY_S:
            return False
        self._last = now
        with Session(self.engine) as session:
            control = session.exec(select(TrainingRun.control).where(TrainingRun.id == self.run_id)).first()
        return control == PAUSE


def _checkpointed(engine: Engine, run_id: int) -> Any:
    """Records each checkpoint's step on the run (so a resume knows where it goes on from)."""

    def record(step: int, eval_loss: float | None) -> None:
        with session_scope(engine) as session:
            run = session.get(TrainingRun, run_id)
            if run is not None:
                run.checkpoint_step = step
                session.add(run)

    return record


def _paused(ctx: JobContext, run_id: int, step: int) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        run.status = RunStatus.PAUSED
        run.control = None
        run.checkpoint_step = step
        run.note = f"Paused at step {step} (checkpoint kept); Resume goes on from there."
        session.add(run)
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)
    return {"run_id": run_id, "paused_at": step}


def train_job(run_id: int) -> dict[str, Any]:
    """The training job (runs in the worker's work-horse): train, then register a candidate version.

    Returns:
        ``{"run_id": …, "version": N}`` (RQ keeps it as the job's result).
    """
    from runner.ml import loop  # torch: loaded in the work-horse only

    ctx = JobContext.current()
    trains_on = hardware_class(ctx.settings)
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES:
            log.info("run %s is gone or ended; nothing to do", run_id)
            return {"run_id": run_id, "skipped": True}
        project = session.get(Project, run.project_id)
        assert project is not None
        job = get_current_job()
        if job is not None and run.rq_job_id and job.id != run.rq_job_id:
            log.info("run %s has moved on to job %s; nothing to do", run_id, run.rq_job_id)
            return {"run_id": run_id, "skipped": True}
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or utcnow()
        run.heartbeat_at = utcnow()
        run.worker = f"{socket.gethostname()}:{os.getppid()}"
        run.pid = os.getpid()
        run.hardware_class = trains_on
        session.add(run)
        snapshot = snapshots.get_snapshot(session, project, run.snapshot_id)
        rows = snapshots.snapshot_rows(session, snapshot.id)
        frozen = snapshot.stats
        instructions = str(frozen.get("instructions", project.instructions))
        task_type = str(frozen.get("task_type", project.task_type))
        config = TrainConfig(**run.config)
        attempt = run.attempt
    # A pulled name trains on its folder; the run and the version keep the name they were given.
    config = config.model_copy(
        update={"base_model": basemodels.resolve(config.base_model, ctx.settings.ftbot_models_dir)}
    )
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)
    # Trained on the same records `ftbot export` writes, emails and phone numbers redacted.
    train_rows = [
        exporting.chat_record(task_type, instructions, r, redact=True) for r in rows if r.split == Split.TRAIN
    ]
    eval_rows = [
        exporting.chat_record(task_type, instructions, r, redact=True) for r in rows if r.split == Split.EVAL
    ]
    partial = partial_dir(ctx.settings, project, run_id)
    checkpoints = checkpoint_dir(ctx.settings, project, run_id)
    shutil.rmtree(partial, ignore_errors=True)  # a previous try's leftovers
    partial.parent.mkdir(parents=True, exist_ok=True)
    job = get_current_job()
    # The limit the enqueuer chose (FTBOT_JOB_TIMEOUT where the request was made), less RQ's backstop.
    limit = job.timeout - BACKSTOP_S if job is not None and job.timeout else ctx.settings.ftbot_job_timeout
    deadline = time.monotonic() + limit
    try:
        with _Heartbeat(ctx.engine, run_id):
            hooks: dict[str, Any] = {
                "progress": _ProgressReporter(ctx, run_id),
                "should_stop": lambda: time.monotonic() > deadline,
                "checkpoint_dir": checkpoints,
                "should_pause": _PauseRequest(ctx.engine, run_id),
                "on_checkpoint": _checkpointed(ctx.engine, run_id),
            }
            try:
                if config.nodes > 1:  # launched on several machines and watched (runner.jobs.multinode)
                    from runner.jobs import multinode

                    result = multinode.launch(
                        ctx.settings,
                        _redis(ctx),
                        run_id=run_id,
                        attempt=attempt,
                        config=config,
                        train_examples=train_rows,
                        eval_examples=eval_rows,
                        out_dir=partial,
                        workdir=launch_dir(ctx.settings, project, run_id),
                        **hooks,
                    )
                elif config.procs > 1:  # torchrun, in a process group of its own (runner.ml.distributed)
                    from runner.ml import distributed

                    result = distributed.launch(
                        config,
                        train_rows,
                        eval_rows,
                        partial,
                        workdir=launch_dir(ctx.settings, project, run_id),
                        **hooks,
                    )
                else:
                    result = loop.train(config, train_rows, eval_rows, partial, **hooks)
            except TrainingPaused as exc:
                shutil.rmtree(partial, ignore_errors=True)
                return _paused(ctx, run_id, exc.step)
            except TrainingCancelled as exc:
                if time.monotonic() <= deadline:
                    raise  # its processes were stopped (SIGTERM) from outside the job
                raise TrainingTimeout(f"Training ran past its {limit} s limit ({exc})") from exc
            finally:
                shutil.rmtree(launch_dir(ctx.settings, project, run_id), ignore_errors=True)
        (partial / "ftbot.json").write_text(
            json.dumps({"project": project.name, "run_id": run_id, "snapshot": snapshot.id}, indent=2)
        )
        version = register(ctx, run_id, partial, result.to_dict())
        shutil.rmtree(checkpoints, ignore_errors=True)  # the version holds what the run made
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if not isinstance(exc, TRANSIENT):
            shutil.rmtree(checkpoints, ignore_errors=True)  # the run fails for good
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
            config = run.config
            version = ModelVersion(
                project_id=project.id or 0,
                number=number,
                run_id=run_id,
                snapshot_id=run.snapshot_id,
                base_model=config["base_model"],
                status=VersionStatus.CANDIDATE,
                artifact_path=str(final),
                config=run.config,
                metrics=metrics,
            )
            session.add(version)
            try:
                session.flush()
                run.version_id = version.id
                run.metrics = metrics
                run.status = RunStatus.FINISHED
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
    ctx = JobContext.current()
    retrying = bool(job.retries_left) and isinstance(exc_value, TRANSIENT)
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES or not is_current(run, job.id):
            return
        if retrying:
            run.status = RunStatus.QUEUED
            run.error = f"retrying after a transient fault: {exc_value}"
            session.add(run)
        else:
            message = f"{exc_type.__name__}: {exc_value}"[:2000]
            finish(session, run, RunStatus.FAILED, error=message, advice=advice_for(message))
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)


def on_train_stopped(job: Job, connection: Redis) -> None:
    """RQ stopped callback (Cancel pressed; the work-horse was killed): cancelled, partial files gone."""
    run_id = int(job.meta.get("run_id", 0))
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        nodes = int(run.config.get("nodes", 1)) if run is not None else 1
    if nodes > 1:  # the other nodes (or the TrainJob) end theirs too
        from runner.jobs import multinode

        try:
            multinode.abort(connection, run_id, int(job.meta.get("attempt", 0)), nodes)
        except Exception:
            log.exception("could not tell the other nodes of run %s to stop", run_id)
    mark_ended(run_id, RunStatus.CANCELLED, "Cancelled while training.", job_id=job.id)


def is_current(run: TrainingRun, job_id: str | None) -> bool:
    """Whether `job_id` is the run's job now (a resumed run has moved on from its earlier jobs)."""
    return job_id is None or not run.rq_job_id or run.rq_job_id == job_id


def mark_ended(
    run_id: int, status: RunStatus, error: str, advice: str | None = None, *, job_id: str | None = None
) -> None:
    """Record a run's end from outside its job (worker parent, callbacks) and clean up after it.

    Args:
        job_id: the job this is about; nothing is done when the run has moved on to another.
    """
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES or not is_current(run, job_id):
            return
        project = session.get(Project, run.project_id)
        finish(session, run, status, error=error, advice=advice)
    if project is not None:
        for folder in scratch_dirs(ctx.settings, project, run_id):
            shutil.rmtree(folder, ignore_errors=True)
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)


def resume_or_end(
    run_id: int,
    why: str,
    status: RunStatus,
    error: str,
    advice: str | None = None,
    *,
    job_id: str | None = None,
    connection: Redis | None = None,
) -> bool:
    """A run whose worker died: resume it from its checkpoint (`runs.auto_resume`) or end it.

    Returns:
        True when it was queued again.
    """
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status in TERMINAL_RUN_STATUSES or not is_current(run, job_id):
            return False
        resumed = runs.auto_resume(session, run, settings=ctx.settings, why=why)
    if not resumed:
        mark_ended(run_id, status, error, advice, job_id=job_id)
        return False
    with session_scope(ctx.engine) as session:
        stored = session.get(TrainingRun, run_id)
    assert stored is not None
    try:
        runs.enqueue_run(ctx.engine, stored, settings=ctx.settings, connection=connection or _redis(ctx))
    except FtbotError:
        log.exception("could not enqueue the resumed run", extra={"run_id": run_id})
    notify.run_status(ctx.engine, notify.client_for(ctx.settings), run_id)
    return True


def _redis(ctx: JobContext) -> Redis:
    return Redis.from_url(ctx.settings.redis_url)


def evaluate_job(run_id: int) -> dict[str, Any]:
    """RQ job on the eval queue, run after the run's training job: evaluate and report its version."""
    ctx = JobContext.current()
    with session_scope(ctx.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or run.status != RunStatus.FINISHED or run.version_id is None:
            return {"run_id": run_id, "skipped": "the run did not register a version"}
        job = get_current_job()
        if job is not None and run.eval_job_id and job.id != run.eval_job_id:
            # An earlier try's evaluation (the run paused or was resumed since): the current one runs.
            return {"run_id": run_id, "skipped": "the run was resumed; its latest evaluation job runs"}
        version_id = run.version_id
    return evaluate_and_report(ctx.settings, ctx.engine, version_id)


def evaluate_and_report(settings: Settings, engine: Engine, version_id: int) -> dict[str, Any]:
    """Evaluate `version_id`, then post the summary; returns the verdict (the job's result)."""
    from runner.ml.evaluation import evaluate_version  # torch: loaded in the work-horse only

    report = evaluate_version(settings, engine, version_id)
    notify.post_summary(settings, engine, version_id)
    return {"version_id": version_id, "verdict": report["verdict"]}


def evaluate_version_job(version_id: int) -> dict[str, Any]:
    """RQ job for ``ftbot eval <project> vN``."""
    ctx = JobContext.current()
    return evaluate_and_report(ctx.settings, ctx.engine, version_id)
