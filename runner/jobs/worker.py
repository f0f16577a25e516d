"""`ftbot worker`: an RQ worker for GPU hosts that also keeps run records honest.

Many workers on many hosts share one Redis; each serves the queues it is given (default ``train``
and ``eval``). The parent process never imports torch (so it never initialises CUDA before
forking): jobs load the training libraries in the work-horse. On start, and every
``RECONCILE_EVERY_S`` after, the worker reconciles runs whose job or worker is gone
(`runner.jobs.reconcile`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from redis import Redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from runner.core.config import Settings
from runner.core.db import make_engine
from runner.core.models import RunStatus
from runner.jobs import tasks
from runner.jobs.queues import queue
from runner.jobs.reconcile import RECONCILE_EVERY_S, reconcile_once

log = logging.getLogger(__name__)


def fail_killed_run(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
    """RQ's hook for a work-horse that died (the OOM killer, SIGKILL): its run fails at once, with
    the reason and advice, instead of staying "running". (A horse stopped by Cancel never comes
    here: RQ handles that as a stopped job.)"""
    run_id = int((job.meta or {}).get("run_id", 0))
    if not run_id:
        return
    signal_number = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
    reason = (
        f"The training process was killed (signal {signal_number})"
        if signal_number
        else f"The training process exited unexpectedly (status {ret_val})"
    )
    tasks.mark_ended(run_id, RunStatus.FAILED, reason + ".", tasks.advice_for(f"signal {signal_number}"))


def _reconcile_forever(connection: Redis, stop: threading.Event) -> None:
    while not stop.wait(RECONCILE_EVERY_S):
        try:
            reconcile_once(connection)
        except Exception:  # the next pass retries; a worker must not die of its housekeeping
            log.exception("reconcile failed")


def serve_metrics(settings: Settings, port: int) -> None:
    """Prometheus metrics on `port` (a thread in the worker's parent): runs by state, durations,
    tokens/s and queue depths, read from the database and Redis at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server

    from runner.jobs.metrics_export import JobsCollector

    registry = CollectorRegistry()
    registry.register(
        JobsCollector(
            make_engine(settings.sqlalchemy_url), Redis.from_url(settings.redis_url), settings.ftbot_queues
        )
    )
    start_http_server(port, registry=registry)


def run_worker(
    settings: Settings, *, queues: tuple[str, ...], burst: bool = False, name: str | None = None
) -> bool:
    """Serve `queues` until stopped (or, with `burst`, until they are empty).

    Returns:
        True when the worker did any work.
    """
    queue_names = queues
    connection = Redis.from_url(settings.redis_url)
    reconcile_once(connection)
    stop = threading.Event()
    if not burst:
        threading.Thread(target=_reconcile_forever, args=(connection, stop), daemon=True).start()
    worker = Worker(
        [queue(name, connection) for name in queue_names],
        connection=connection,
        serializer=JSONSerializer,
        name=name,
        work_horse_killed_handler=fail_killed_run,
    )
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))
    finally:
        stop.set()
