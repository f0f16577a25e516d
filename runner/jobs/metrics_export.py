"""Prometheus job figures (runs by state, durations, tokens/s, queue depths), read from the database
and Redis when scraped, so every bot replica and worker reports the same truth whichever process did
the work. (`ftbot worker --metrics-port` serves them; the bot's `/metrics` adds its own counters.)
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue
from sqlalchemy.engine import Engine
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import Project, RunStatus, TrainingRun


class JobsCollector(Collector):
    """Training runs by state, durations and throughput from the database; queue depths from RQ."""

    def __init__(self, engine: Engine, redis: Redis | None = None, queues: tuple[str, ...] = ()) -> None:
        self.engine, self.redis, self.queues = engine, redis, queues

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("ftbot_training_runs", "Training runs by state", labels=["status"])
        duration = SummaryMetricFamily("ftbot_training_run_seconds", "Wall time of finished training runs")
        speed = GaugeMetricFamily(
            "ftbot_training_tokens_per_second",
            "Real tokens/s of each project's latest finished run",
            labels=["project"],
        )
        with session_scope(self.engine) as session:
            rows = session.exec(select(TrainingRun, Project).join(Project)).all()
        counts = {str(status): 0 for status in RunStatus}
        total, count, latest = 0.0, 0, {}
        for run, project in rows:
            counts[run.status] = counts.get(run.status, 0) + 1
            if run.status == RunStatus.FINISHED and run.metrics:
                figures = run.metrics
                total += float(figures.get("wall_time_s", 0.0))
                count += 1
                latest[project.name] = float(figures.get("tokens_per_s", 0.0))
        for status, n in counts.items():
            runs.add_metric([status], n)
        duration.add_metric([], count, total)
        for name, value in latest.items():
            speed.add_metric([name], value)
        yield from (runs, duration, speed)
        if self.redis is not None and self.queues:
            depth = GaugeMetricFamily(
                "ftbot_queue_jobs", "RQ jobs per queue and state", labels=["queue", "state"]
            )
            for name in self.queues:
                queue = Queue(name, connection=self.redis)
                depth.add_metric([name, "queued"], queue.count)
                depth.add_metric([name, "started"], queue.started_job_registry.count)
                depth.add_metric([name, "failed"], queue.failed_job_registry.count)
                depth.add_metric([name, "deferred"], queue.deferred_job_registry.count)
            yield depth
