"""`ftbot worker`: an RQ worker for GPU hosts that also keeps run records honest.

Many workers on many hosts share one Redis; each serves the queues it is given (default ``train``
and ``eval``). The parent process never imports torch (so it never initialises CUDA before
forking): jobs load the training libraries in the work-horse. On start, and every
``RECONCILE_EVERY_S`` after, the worker reconciles runs whose job or worker is gone.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from redis import Redis
from rq import Worker
from rq.serializers import JSONSerializer

from runner import jobs, notify
from runner.config import Settings
from runner.db import make_engine, session_scope
from runner.models import RunStatus

log = logging.getLogger(__name__)

# Well inside the two minutes within which a run on a dead worker must be marked failed.
RECONCILE_EVERY_S = 30.0


class FtbotWorker(Worker):
    """RQ's forking worker, plus: a work-horse killed by a signal (the OOM killer, SIGKILL) fails
    its run at once, with the reason and advice, instead of leaving it "running"."""

    def handle_work_horse_killed(self, job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        run_id = int((job.meta or {}).get("run_id", 0))
        if not run_id or self._stopped_job_id == job.id:
            return
        signal_number = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
        reason = (
            f"The training process was killed (signal {signal_number})"
            if signal_number
            else f"The training process exited unexpectedly (status {ret_val})"
        )
        jobs.mark_ended(run_id, RunStatus.FAILED, reason + ".", jobs.advice_for(f"signal {signal_number}"))


def reconcile_once(settings: Settings, connection: Redis) -> list[int]:
    engine = make_engine(settings.sqlalchemy_url)
    try:
        with session_scope(engine) as session:
            changed = jobs.reconcile(session, settings=settings, connection=connection)
        client = notify.client_for(settings)
        for run_id in changed:
            notify.run_status(engine, client, run_id)
        if changed:
            log.warning("reconciled runs %s", changed)
        return changed
    finally:
        engine.dispose()


def _reconcile_forever(settings: Settings, connection: Redis, stop: threading.Event) -> None:
    while not stop.wait(RECONCILE_EVERY_S):
        try:
            reconcile_once(settings, connection)
        except Exception:  # the next pass retries; a worker must not die of its housekeeping
            log.exception("reconcile failed")


def serve_metrics(settings: Settings, port: int) -> None:
    """Prometheus metrics on `port` (a thread in the worker's parent): runs by state, durations,
    tokens/s and queue depths, read from the database and Redis at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server

    from runner.metrics_export import JobsCollector

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
    connection = Redis.from_url(settings.redis_url)
    reconcile_once(settings, connection)
    stop = threading.Event()
    if not burst:
        threading.Thread(target=_reconcile_forever, args=(settings, connection, stop), daemon=True).start()
    worker = FtbotWorker(
        [jobs.queue(q, connection) for q in queues],
        connection=connection,
        serializer=JSONSerializer,
        name=name,
    )
    try:
        return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))
    finally:
        stop.set()
