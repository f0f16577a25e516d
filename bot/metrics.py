"""The bot's Prometheus metrics: requests, ack latency and listener errors, counted as they happen,
and `exposition` for ``GET /metrics`` (these plus the job figures from `runner.jobs.metrics_export`).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from redis import Redis
from sqlalchemy.engine import Engine

from runner.jobs.metrics_export import JobsCollector

REQUESTS = Counter(
    "ftbot_slack_requests_total", "Requests from Slack, by kind and outcome", ["kind", "status"]
)
ACK_SECONDS = Histogram(
    "ftbot_ack_seconds",
    "Time from request to the ack sent back to Slack (Slack gives up after 3 s)",
    ["kind"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)
LISTENER_ERRORS = Counter("ftbot_listener_errors_total", "Exceptions raised in Bolt listeners", ["listener"])
WORK_REFUSED = Counter(
    "ftbot_work_refused_total", "Requests answered 'try again' because the work pool was full", ["kind"]
)
EVENTS_HANDED_OVER = Counter(
    "ftbot_events_handed_over_total", "Events acknowledged here and queued for an event worker"
)


def exposition(engine: Engine, redis: Redis | None = None, queues: tuple[str, ...] = ()) -> bytes:
    """The text format for ``GET /metrics``: this process's counters (all gunicorn workers' when
    ``PROMETHEUS_MULTIPROC_DIR`` is set) plus the database- and Redis-backed job figures."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, ACK_SECONDS, LISTENER_ERRORS, WORK_REFUSED, EVENTS_HANDED_OVER):
            registry.register(collector)
    registry.register(JobsCollector(engine, redis, queues))
    return generate_latest(registry)
