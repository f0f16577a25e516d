"""Messages the runner posts to Slack (through slack_sdk's WebClient only, so workers need no Bolt).

A worker without ``SLACK_BOT_TOKEN`` (a CLI run, a laptop) skips Slack and keeps going.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from runner.config import Settings
from runner.db import session_scope
from runner.models import ModelVersion, Project, RunStatus, TrainingRun
from runner.render import render
from runner.slackapi import call, make_client

log = logging.getLogger(__name__)


def client_for(settings: Settings) -> WebClient | None:
    """A WebClient when a bot token is configured, else None."""
    return make_client(settings) if settings.slack_bot_token else None


def slack_person(who: str) -> str:
    """A Slack mention for user ids, the text itself for anything else (``cli:alice``)."""
    return f"<@{who}>" if re.fullmatch(r"[UW][A-Z0-9]+", who) else who


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:  # NaN
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def run_context(run: TrainingRun, project: Project, version: ModelVersion | None) -> dict[str, Any]:
    """The variables of ``run_status.json.j2`` for `run`."""
    progress = json.loads(run.progress_json or "{}")
    metrics = json.loads(run.metrics_json) if run.metrics_json else {}
    return {
        "run_id": run.id,
        "project": project.name,
        "status": run.status,
        "open": run.status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value),
        "requested_by": slack_person(run.requested_by),
        "snapshot": run.snapshot_id[:12],
        "progress": progress,
        "eta": _duration(progress.get("eta_s")) if progress else "?",
        "metrics": {
            "final_train_loss": metrics.get("final_train_loss"),
            "best_eval_loss": metrics.get("best_eval_loss"),
            "tokens_per_s": metrics.get("tokens_per_s"),
            "wall": _duration(metrics.get("wall_time_s")),
            "steps": metrics.get("steps"),
            "stopped_early": metrics.get("stopped_early"),
        },
        "version": version.number if version else None,
        "error": run.error or "",
        "advice": run.advice or "",
    }


def run_status(engine: Engine, client: WebClient | None, run_id: int) -> None:
    """Post or update the run's status message in its project thread (no-op without Slack)."""
    if client is None:
        return
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or not run.channel_id:
            return
        project = session.get(Project, run.project_id)
        assert project is not None
        version = session.get(ModelVersion, run.version_id) if run.version_id else None
        payload = render("run_status.json.j2", **run_context(run, project, version))
        channel, status_ts, thread_ts = run.channel_id, run.status_ts, run.thread_ts
    if status_ts:
        call(client, "chat_update", channel=channel, ts=status_ts, **payload)
        return
    posted = call(client, "chat_postMessage", channel=channel, thread_ts=thread_ts, **payload)
    if posted is not None:
        with session_scope(engine) as session:
            stored = session.get(TrainingRun, run_id)
            if stored is not None and not stored.status_ts:
                stored.status_ts = posted["ts"]
                session.add(stored)
