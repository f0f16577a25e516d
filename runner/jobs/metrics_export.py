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
from sqlmodel import col, select

from runner.core.db import session_scope
from runner.core.models import (
    DriftAlert,
    Prediction,
    PredictionStatus,
    Project,
    RunStatus,
    TrainingRun,
)
from runner.registry import pilot

LATENCY_WINDOW = 500  # the latest predictions the latency quantiles are taken over


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


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
        yield from pilot_metrics(self.engine)
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


def pilot_metrics(engine: Engine) -> Iterator[Metric]:
    """Pilot acceptance per version (with its Wilson interval), drift alerts, and prediction counts
    and latency (message → suggestion posted, and the model's own time) over the latest predictions."""
    accepted = GaugeMetricFamily(
        "ftbot_pilot_acceptance",
        "Share of reviewed pilot suggestions accepted",
        labels=["project", "version"],
    )
    bounds = GaugeMetricFamily(
        "ftbot_pilot_acceptance_interval",
        "95% Wilson interval of the acceptance",
        labels=["project", "version", "bound"],
    )
    reviewed = GaugeMetricFamily(
        "ftbot_pilot_reviewed", "Reviewed pilot suggestions", labels=["project", "version", "outcome"]
    )
    alerts = GaugeMetricFamily(
        "ftbot_drift_alerts",
        "Alerts on versions in production (acceptance dropped, label mix shifted)",
        labels=["project", "kind", "status"],
    )
    made = GaugeMetricFamily("ftbot_predictions", "Predictions by status", labels=["status"])
    latency = GaugeMetricFamily(
        "ftbot_prediction_latency_seconds",
        f"Prediction latency over the latest {LATENCY_WINDOW} predictions",
        labels=["stage", "quantile"],
    )
    with session_scope(engine) as session:
        for project in session.exec(select(Project)).all():
            for row in pilot.project_acceptance(session, project):
                version = f"v{row.version}"
                low, high = row.rate.interval
                accepted.add_metric([project.name, version], row.rate.rate)
                bounds.add_metric([project.name, version, "low"], low)
                bounds.add_metric([project.name, version, "high"], high)
                reviewed.add_metric([project.name, version, "accepted"], row.rate.accepted)
                reviewed.add_metric(
                    [project.name, version, "corrected"], row.rate.reviewed - row.rate.accepted
                )
        names = {p.id: p.name for p in session.exec(select(Project)).all()}
        alert_counts: dict[tuple[str, str, str], int] = {}
        for alert in session.exec(select(DriftAlert)).all():
            key = (names.get(alert.project_id, "?"), str(alert.kind), str(alert.status))
            alert_counts[key] = alert_counts.get(key, 0) + 1
        status_counts = {str(s): 0 for s in PredictionStatus}
        for status in session.exec(select(Prediction.status)).all():
            status_counts[str(status)] += 1
        recent = session.exec(
            select(Prediction)
            .where(Prediction.status == PredictionStatus.DONE)
            .order_by(col(Prediction.id).desc())
            .limit(LATENCY_WINDOW)
        ).all()
        suggestion = [  # shadow answers shown to reviewers are not suggestions
            (p.posted_at - p.created_at).total_seconds() for p in recent if p.posted_at and not p.shadow
        ]
        model = [p.model_seconds for p in recent if p.model_seconds is not None]
    for (name, kind, status), n in sorted(alert_counts.items()):
        alerts.add_metric([name, kind, status], n)
    for status, n in status_counts.items():
        made.add_metric([status], n)
    for stage, values in (("suggestion", suggestion), ("model", model)):
        if values:
            for q in (0.5, 0.95):
                latency.add_metric([stage, str(q)], _quantile(values, q))
    yield from (accepted, bounds, reviewed, alerts, made, latency)
