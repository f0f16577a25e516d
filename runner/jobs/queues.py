"""RQ queues: which queue a job goes to, its id, and enqueueing a run's training and evaluation.

Redis carries only ids: a job reads its run (config, snapshot) from the database and writes its
outcome back; jobs use RQ's JSON serializer and are enqueued by dotted path, so the enqueuer never
imports the job's code (or torch).
"""

from __future__ import annotations

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy.exc import OperationalError

from runner.core.config import Settings
from runner.jobs import hardware

TRAIN_QUEUE = "train"
EVAL_QUEUE = "eval"
PREDICT_QUEUE = "predict"
# A prediction is asked by someone waiting for it: one not answered within this is not worth answering.
PREDICT_TIMEOUT_S = 900

BACKSTOP_S = 600
# Faults that a second try can fix: the database or Redis briefly away, a dropped connection.
TRANSIENT = (OperationalError, ConnectionError, TimeoutError)


def queue(name: str, connection: Redis) -> Queue:
    """An RQ queue using the JSON serializer (jobs carry ids only)."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def train_job_id(run_id: int, attempt: int = 0) -> str:
    """The training job of a run's first try, and of each resume after it (``-1``, ``-2``, …)."""
    return f"ftbot-train-{run_id}" + (f"-{attempt}" if attempt else "")


def eval_job_id(run_id: int, attempt: int = 0) -> str:
    return f"ftbot-eval-{run_id}" + (f"-{attempt}" if attempt else "")


def enqueue(
    run_id: int,
    project_id: int,
    *,
    settings: Settings,
    connection: Redis,
    attempt: int = 0,
    train_queue: str = TRAIN_QUEUE,
) -> None:
    """Put a committed run's training job on the train queue and its evaluation after it on the eval
    queue (the job ids are `train_job_id` / `eval_job_id` of the run and its attempt, already on its
    row: a resumed run gets new jobs, so what RQ still does about an earlier one cannot touch it).
    ``train_queue`` is its hardware class's (`train_queue_for`).

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    train = queue(train_queue, connection).enqueue(
        "runner.jobs.tasks.train_job",
        run_id,
        job_id=train_job_id(run_id, attempt),
        # The job enforces FTBOT_JOB_TIMEOUT itself, between steps, so it can fail cleanly; RQ's own
        # limit is a backstop for a job stuck outside the training loop (loading a model, say).
        job_timeout=settings.ftbot_job_timeout + BACKSTOP_S,
        result_ttl=7 * 24 * 3600,
        failure_ttl=30 * 24 * 3600,
        retry=Retry(max=2, interval=[30, 120]),
        on_failure=Callback("runner.jobs.tasks.on_train_failure"),
        on_stopped=Callback("runner.jobs.tasks.on_train_stopped"),
        meta={"run_id": run_id, "project_id": project_id, "attempt": attempt},
        description=f"train run {run_id} of project {project_id}"
        + (f" (resume {attempt})" if attempt else ""),
    )
    queue(EVAL_QUEUE, connection).enqueue(
        "runner.jobs.tasks.evaluate_job",
        run_id,
        job_id=eval_job_id(run_id, attempt),
        depends_on=train,
        job_timeout=settings.ftbot_job_timeout,
        result_ttl=7 * 24 * 3600,
        meta={"run_id": run_id},
        description=f"evaluate run {run_id}",
    )


def train_class_for(
    settings: Settings, *, procs: int, memory_bytes: int | None
) -> hardware.HardwareClass | None:
    """The smallest hardware class that can run a job (`runner.jobs.hardware`); None when no classes
    are configured.

    Raises:
        ValueError: no class can run it (the message says why).
    """
    if not settings.ftbot_hardware_classes:
        return None
    classes = hardware.parse_classes(settings.ftbot_hardware_classes)
    return hardware.route(classes, procs=procs, memory_bytes=memory_bytes)


def train_queue_for(settings: Settings, *, procs: int, memory_bytes: int | None) -> str:
    """The train queue of the smallest hardware class that can run a job; ``train`` when no classes
    are configured.

    Raises:
        ValueError: no class can run it (the message says why).
    """
    found = train_class_for(settings, procs=procs, memory_bytes=memory_bytes)
    return found.queue if found is not None else TRAIN_QUEUE


def fetch_job(connection: Redis | None, job_id: str | None) -> Job | None:
    if connection is None or not job_id:
        return None
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def enqueue_evaluation(version_id: int, *, settings: Settings, connection: Redis) -> Job:
    """Put an evaluation of version `version_id` on the eval queue (``ftbot eval``, re-evaluations)."""
    return queue(EVAL_QUEUE, connection).enqueue(
        "runner.jobs.tasks.evaluate_version_job",
        version_id,
        job_timeout=settings.ftbot_job_timeout,
        result_ttl=7 * 24 * 3600,
        meta={"version_id": version_id},
        description=f"evaluate version {version_id}",
    )


def predict_job_id(prediction_id: int) -> str:
    return f"ftbot-predict-{prediction_id}"


def enqueue_prediction(prediction_id: int, *, connection: Redis) -> Job:
    """Put a committed prediction on the predict queue (its worker answers it with whatever else is
    queued by then: `runner.jobs.predict`).

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    return queue(PREDICT_QUEUE, connection).enqueue(
        "runner.jobs.predict.predict_job",
        prediction_id,
        job_id=predict_job_id(prediction_id),
        job_timeout=PREDICT_TIMEOUT_S,
        ttl=PREDICT_TIMEOUT_S,
        result_ttl=3600,
        failure_ttl=24 * 3600,
        meta={"prediction_id": prediction_id},
        description=f"prediction {prediction_id}",
    )


def enqueue_alert_chart(alert_id: int, *, connection: Redis) -> Job:
    """Put the drawing of an acceptance alert's chart on the predict queue (`runner.jobs.alerts`): its
    worker serves every pilot and has matplotlib, which the bot that raised the alert does not.

    Raises:
        redis.RedisError: Redis cannot be reached.
    """
    return queue(PREDICT_QUEUE, connection).enqueue(
        "runner.jobs.alerts.alert_chart_job",
        alert_id,
        job_id=f"ftbot-alert-chart-{alert_id}",
        job_timeout=300,
        result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=2, interval=[30, 120]),
        meta={"alert_id": alert_id},
        description=f"chart of alert {alert_id}",
    )
