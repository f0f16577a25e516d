"""Gunicorn, embedded: `ftbot serve` runs the WSGI app in worker processes with threads.

Each worker builds its own Bolt app and database engine after the fork (connections must not be
shared across processes). Threads matter: a listener acks on the request thread and its work runs
on the app's work pool (`bot.work`), and Slack sends the next request without waiting.
"""

from __future__ import annotations

import gc
import signal
from typing import Any

from gunicorn.app.base import BaseApplication
from redis import Redis
from sqlalchemy.engine import Engine

from bot.app import FtbotApp, build_app
from bot.handoff import EventWorker, Handoff, doorbell_client
from bot.http import FtbotRequestHandler
from bot.inbox import Sweeper
from bot.tally import Repairer
from runner.core.config import Settings
from runner.core.db import commit_without_waiting_for_disk, make_engine
from runner.jobs.reconcile import DeployReconciler


def start_housekeeping(
    app: FtbotApp, engine: Engine, settings: Settings, handoff: Handoff | None = None
) -> None:
    """The threads every bot process runs beside its requests (HTTP and Socket Mode alike)."""
    # replays events a crashed process left unfinished, and events queued for workers that are gone
    Sweeper(app, engine, settings, take_back=handoff.take_back if handoff else None).start()
    DeployReconciler(engine, settings).start()  # settles deployments a crash or outage left half-way
    Repairer(engine, app.deps.tally, settings.ftbot_repair_interval).start()  # tallies Slack refused


def freeze_start_up_objects() -> None:
    """Keep what start-up built (modules, the app, its templates: some 150,000 objects) out of the
    collector's full passes. A full pass stops every thread of the process; over that heap it took
    75–160 ms in a web process under a burst of reactions, stalling every ack in flight, and 4 ms
    once these objects were frozen."""
    gc.collect()
    gc.freeze()


def make_wsgi_app(settings: Settings) -> Any:
    """The WSGI callable: the Bolt app behind ftbot's request handler."""
    engine = make_engine(settings.sqlalchemy_url)
    app = build_app(settings, engine)
    handoff = Handoff(doorbell_client(settings.redis_url), settings.ftbot_event_worker_ttl)
    start_housekeeping(app, engine, settings, handoff)
    freeze_start_up_objects()
    return FtbotRequestHandler(
        app,
        engine,
        redis=Redis.from_url(settings.redis_url),
        queues=settings.ftbot_queues,
        settings=settings,
        handoff=handoff,
    )


def run_event_worker(settings: Settings, engine: Engine) -> None:
    """``ftbot event-worker``: run queued events (`bot.handoff`) until SIGTERM or SIGINT."""
    # Its writes can all be done again from the inbox, committed synchronously by the ack: its own
    # commits need not wait for the disk (and so do not slow the acks' down).
    commit_without_waiting_for_disk(engine)
    engine.dispose()  # connections opened before (the migration's) are opened again, with it
    # A few threads: the work is Python and database round trips, and more threads per process
    # only contend for the interpreter lock and the database (bench/README.md); scale with processes.
    threads = {"ftbot_work_threads": settings.ftbot_event_worker_threads}
    # Built as for Socket Mode: the bodies come from the database, with no signature to check.
    app = build_app(settings.model_copy(update=threads), engine, socket_mode=True)
    worker = EventWorker(app, engine, Redis.from_url(settings.redis_url))
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    freeze_start_up_objects()
    worker.run()


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings_ = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return make_wsgi_app(self.settings_)


def run_gunicorn(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    """Serve until stopped (SIGTERM finishes in-flight requests first)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
    }
    _Gunicorn(settings, options).run()
