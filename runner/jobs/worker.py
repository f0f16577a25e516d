"""`ftbot worker`: an RQ worker for GPU hosts that also keeps run records honest.

Many workers on many hosts share one Redis; each serves the queues it is given (default ``train``
and ``eval``). The parent process never imports torch (so it never initialises CUDA before
forking): jobs load the training libraries in the work-horse. On start, and every
``RECONCILE_EVERY_S`` after, the worker reconciles runs whose job or worker is gone
(`runner.jobs.reconcile`).

The trainer never outlives its worker. RQ runs the work-horse in a process group of its own (so a
Ctrl+C in a terminal reaches the worker alone), which would let it survive a worker killed with its
process group. Here:

* stopping the worker (SIGTERM, SIGINT: a deploy, ``docker stop``) ends the job in progress at once
  — the horse's whole process group, so whatever it launched too — and queues its run again from
  its last checkpoint (or fails it with the reason when it has none, or has resumed
  ``FTBOT_RESUME_ATTEMPTS`` times), instead of waiting hours for the training to finish;
* in the horse, the kernel sends SIGTERM when the worker dies however it dies (SIGKILL included;
  Linux's parent-death signal), and the horse answers it by killing its own process group. The
  reconciler resumes the run from its last checkpoint (or fails it) when its heartbeat stops.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from redis import Redis
from rq import SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from runner.core.config import Settings
from runner.core.db import make_engine
from runner.core.exceptions import ConfigError
from runner.core.models import RunStatus
from runner.jobs import tasks
from runner.jobs.queues import PREDICT_QUEUE, queue
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
    tasks.mark_ended(
        run_id, RunStatus.FAILED, reason + ".", tasks.advice_for(f"signal {signal_number}"), job_id=job.id
    )


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def _end_process_group(*_args: object) -> None:
    """End this process and everything in its process group (the horse and what it launched)."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


def die_with_parent(parent_pid: int) -> None:
    """In a work-horse: end its process group when the worker (`parent_pid`) dies, however it dies."""
    signal.signal(signal.SIGTERM, _end_process_group)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("could not ask to be ended with the worker", extra={"errno": ctypes.get_errno()})
    if os.getppid() != parent_pid:  # the worker died before the request above took effect
        _end_process_group()


class FtbotWorker(Worker):
    """RQ's worker, with the trainer's lifetime tied to its own (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_pid = os.getpid()
        self.ending_for_shutdown = False

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        die_with_parent(self.worker_pid)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.horse_pid and not self.ending_for_shutdown:
            # A training run cannot finish within a shutdown's grace period: end it now, honestly.
            self.ending_for_shutdown = True
            self.log.warning("Worker %s: stopping; ending the job in progress", self.name)
            self.kill_horse()  # its whole process group
        super().request_stop(signum, frame)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        job.retries_left = 0  # its run is ended here; a retry would find nothing to do
        if not self.ending_for_shutdown:
            super().handle_work_horse_killed(job, retpid, ret_val, rusage)
            return
        run_id = int((job.meta or {}).get("run_id", 0))
        if run_id:  # goes on from its last checkpoint on another worker, or fails
            tasks.resume_or_end(
                run_id,
                "its worker was stopped (a shutdown or deploy)",
                RunStatus.FAILED,
                "The worker was stopped (a shutdown or deploy) while this run was training.",
                "Press Train again: another worker will take it.",
                job_id=job.id,
                connection=self.connection,
            )


class PredictWorker(SimpleWorker):
    """Serves the predict queue in its own process, no fork per job: the models the jobs load stay
    loaded for the next (`runner.jobs.predict`). A prediction takes a fraction of a second, so a
    stop request simply lets the one in progress finish."""


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
    settings: Settings,
    *,
    queues: tuple[str, ...],
    burst: bool = False,
    name: str | None = None,
    hardware_class: str | None = None,
) -> bool:
    """Serve `queues` until stopped (or, with `burst`, until they are empty).

    Args:
        hardware_class: the class the worker declared (``--gpus``/``--gpu-mem``), recorded on the runs
            it trains; None: each work-horse detects its GPUs.

    Returns:
        True when the worker did any work.
    """
    tasks.WORKER_CLASS = hardware_class  # the work-horses forked from here inherit it
    queue_names = queues
    predicting = PREDICT_QUEUE in queue_names
    if predicting and len(queue_names) > 1:
        raise ConfigError(
            "The predict queue needs a worker of its own (it keeps models loaded; training forks): "
            "run `ftbot worker --queues predict` beside the training worker."
        )
    connection = Redis.from_url(settings.redis_url)
    reconcile_once(connection)
    stop = threading.Event()
    if not burst:
        threading.Thread(target=_reconcile_forever, args=(connection, stop), daemon=True).start()
    worker: Worker | SimpleWorker
    if predicting:
        worker = PredictWorker(
            [queue(PREDICT_QUEUE, connection)], connection=connection, serializer=JSONSerializer, name=name
        )
    else:
        worker = FtbotWorker(
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
