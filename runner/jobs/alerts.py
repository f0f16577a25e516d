"""The acceptance-drop alert's chart: drawn on a worker and uploaded into the alert's thread.

The alert itself is raised where the review that tipped the test was handled — in the bot — and posted
at once, with its evidence and Rollback button. The bot installs without matplotlib (and must not load
the training stack: the import contracts and ``tests/test_layers.py`` hold it so), so it only enqueues
this job by its dotted path, on the predict queue: the worker that serves the pilot's predictions has
the ``train`` extra, keeps running while a pilot is on, and draws in a fraction of a second. The chart
is drawn from the evidence stored on the alert (`runner.ml.charts`) and uploaded with files_upload_v2
into the alert's thread, as the evaluation summary's chart is, once per alert (`DriftAlert.chart_at`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import AlertKind, DriftAlert, ModelVersion, Project
from runner.jobs.tasks import JobContext
from runner.slack import notify

log = logging.getLogger(__name__)


def chart_path(settings: Settings, alert_id: int) -> Path:
    return Path(settings.ftbot_data_dir) / "alerts" / f"alert-{alert_id}.png"


def post_alert_chart(settings: Settings, engine: Engine, alert_id: int) -> dict[str, Any]:
    """Draw alert `alert_id`'s chart and upload it into its thread (once; nothing for other kinds)."""
    with session_scope(engine) as session:
        alert = session.get(DriftAlert, alert_id)
        if alert is None or alert.kind != AlertKind.ACCEPTANCE or alert.chart_at is not None:
            return {"alert_id": alert_id, "uploaded": False}
        project = session.get(Project, alert.project_id)
        version = session.get(ModelVersion, alert.version_id)
        assert project is not None and version is not None
        evidence = dict(alert.evidence)
        accepted, reviewed = evidence["accepted"], evidence["reviewed"]
        title = f"Acceptance of {project.name} v{version.number}: {accepted} of {reviewed} accepted"
    if "series" not in evidence:
        log.warning("alert without its review series: no chart", extra={"alert_id": alert_id})
        return {"alert_id": alert_id, "uploaded": False}
    from runner.ml.charts import draw_acceptance_chart

    chart = draw_acceptance_chart(chart_path(settings, alert_id), evidence, title=title)
    uploaded = notify.upload_alert_chart(settings, engine, alert_id, chart, title=title)
    return {"alert_id": alert_id, "uploaded": uploaded, "chart": str(chart)}


def alert_chart_job(alert_id: int) -> dict[str, Any]:
    """RQ job on the predict queue (enqueued by the bot once the alert is posted)."""
    ctx = JobContext.current()
    return post_alert_chart(ctx.settings, ctx.engine, alert_id)
