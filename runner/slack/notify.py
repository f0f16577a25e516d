"""Messages the runner posts to Slack (through slack_sdk's WebClient only, so workers need no Bolt).

Each function reads what it needs in a unit of work of its own, closes it, and only then calls
Slack. A worker without ``SLACK_BOT_TOKEN`` (a CLI run, a laptop) skips Slack and keeps going.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import (
    AlertKind,
    DriftAlert,
    ModelVersion,
    Prediction,
    PredictionStatus,
    Project,
    TrainingRequest,
    TrainingRun,
    utcnow,
)
from runner.core.policy import is_group
from runner.data import projects
from runner.registry import pilot, versions
from runner.registry.versions import Reconciled
from runner.slack import payloads
from runner.slack.client import UNREACHABLE, call, make_client, try_call

log = logging.getLogger(__name__)


def client_for(settings: Settings) -> WebClient | None:
    """A WebClient when a bot token is configured, else None."""
    return make_client(settings) if settings.slack_bot_token else None


def run_status(engine: Engine, client: WebClient | None, run_id: int) -> None:
    """Post or update the run's status message in its project thread (no-op without Slack).

    The status shown is recorded on the run (`TrainingRun.shown_status`) unless Slack could not be
    reached, so the reconciler can bring a message an outage left behind up to date.
    """
    if client is None:
        return
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or not run.channel_id:
            return
        project = session.get(Project, run.project_id)
        assert project is not None
        version = session.get(ModelVersion, run.version_id) if run.version_id else None
        payload = payloads.run_status(run, project, version)
        channel, status_ts, thread_ts, shown = run.channel_id, run.status_ts, run.thread_ts, run.status
    if status_ts:
        _, error = try_call(client, "chat_update", channel=channel, ts=status_ts, **payload)
        posted_ts = None
    else:
        posted, error = try_call(client, "chat_postMessage", channel=channel, thread_ts=thread_ts, **payload)
        posted_ts = posted["ts"] if posted is not None else None
    if error == UNREACHABLE:
        return  # shown_status stays behind: the reconciler tries again
    this_run = col(TrainingRun.id) == run_id
    with session_scope(engine) as session:
        if posted_ts:
            first = col(TrainingRun.status_ts).is_(None)
            session.execute(update(TrainingRun).where(this_run, first).values(status_ts=posted_ts))
        session.execute(update(TrainingRun).where(this_run).values(shown_status=str(shown)))


def training_request(
    engine: Engine, client: WebClient | None, request_id: int, *, admins: Sequence[str] = ()
) -> str | None:
    """Post or update a training request's message (its estimate and buttons) where its run would
    report; returns Slack's error when it could not be posted (None: shown, or no Slack)."""
    if client is None:
        return None
    with session_scope(engine) as session:
        request = session.get(TrainingRequest, request_id)
        if request is None or not request.channel_id:
            return None
        project = session.get(Project, request.project_id)
        assert project is not None
        payload = payloads.training_request(request, project, admins=admins)
        channel, message_ts, thread_ts = request.channel_id, request.message_ts, request.thread_ts
    if message_ts:
        _, error = try_call(client, "chat_update", channel=channel, ts=message_ts, **payload)
        return error
    posted, error = try_call(client, "chat_postMessage", channel=channel, thread_ts=thread_ts, **payload)
    if posted is None:
        return error
    with session_scope(engine) as session:
        this = col(TrainingRequest.id) == request_id
        first = col(TrainingRequest.message_ts).is_(None)
        session.execute(update(TrainingRequest).where(this, first).values(message_ts=posted["ts"]))
        # Confirmed between the post and now: its run's status message is this one too.
        stored = session.get(TrainingRequest, request_id)
        run_id = stored.run_id if stored is not None else None
        if run_id is not None:
            unset = col(TrainingRun.status_ts).is_(None)
            session.execute(
                update(TrainingRun).where(col(TrainingRun.id) == run_id, unset).values(status_ts=posted["ts"])
            )
    if run_id is not None:
        run_status(engine, client, run_id)
    return None


def request_shown_at(engine: Engine, request_id: int, message_ts: str) -> None:
    """Record where a training request's message is (from a button pressed on it), when the poster
    has not yet: a quick click must update that message, not post another."""
    with session_scope(engine) as session:
        this = col(TrainingRequest.id) == request_id
        first = col(TrainingRequest.message_ts).is_(None)
        session.execute(update(TrainingRequest).where(this, first).values(message_ts=message_ts))


def deploy_reconciled(settings: Settings, outcomes: list[Reconciled]) -> None:
    """Tell each project's channel what the reconciler did about its deployments."""
    client = client_for(settings)
    if client is None:
        return
    for outcome in outcomes:
        if outcome.channel_id:
            call(
                client, "chat_postMessage", channel=outcome.channel_id, **payloads.deploy_reconciled(outcome)
            )


def post_summary(settings: Settings, engine: Engine, version_id: int) -> None:
    """Post the evaluation summary (and its chart) to the project's thread; no-op without Slack."""
    client = client_for(settings)
    if client is None:
        return
    with session_scope(engine) as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None and version.evaluation
        project = session.get(Project, version.project_id)
        assert project is not None
        payload = payloads.eval_summary(project, version, version.evaluation)
        channel, thread = project.channel_id, project.root_ts
        chart = Path(version.evaluation["chart"])
        title = f"{project.name} v{version.number} evaluation"
    if not channel:
        return
    call(client, "chat_postMessage", channel=channel, thread_ts=thread, **payload)
    if chart.exists():
        call(
            client,
            "files_upload_v2",
            channel=channel,
            thread_ts=thread,
            file=str(chart),
            title=title,
            filename="evaluation.png",
        )


def post_suggestions(settings: Settings, engine: Engine, prediction_ids: list[int]) -> None:
    """Post each answered pilot prediction's suggestion in its message's thread, in the order given
    (the order they were asked); predictions asked elsewhere (the CLI) and failed ones post nothing.
    The suggestion's ts is stored, so reviewers' reactions on it find the prediction."""
    client = client_for(settings)
    for prediction_id in prediction_ids:
        with session_scope(engine) as session:
            prediction = session.get(Prediction, prediction_id)
            if (
                prediction is None
                or not prediction.channel_id
                or prediction.shadow
                or prediction.status != PredictionStatus.DONE
                or prediction.suggestion_ts
            ):
                continue
            project = session.get(Project, prediction.project_id)
            version = session.get(ModelVersion, prediction.version_id)
            assert project is not None and version is not None
            payload = payloads.pilot_suggestion(project, version.number, prediction)
            channel, thread = prediction.channel_id, prediction.message_ts
        if client is None:
            continue
        posted = call(client, "chat_postMessage", channel=channel, thread_ts=thread, **payload)
        if posted is None:
            continue
        with session_scope(engine) as session:
            session.execute(
                update(Prediction)
                .where(col(Prediction.id) == prediction_id, col(Prediction.suggestion_ts).is_(None))
                .values(suggestion_ts=posted["ts"], posted_at=utcnow())
            )


def oncall_mention(settings: Settings) -> str:
    """Who an alert pings: the on-call user groups and users (``FTBOT_ONCALL``)."""
    return " ".join(f"<!subteam^{e}>" if is_group(e) else f"<@{e}>" for e in settings.ftbot_oncall)


def _alert_payload(
    project: str, version: int, alert: DriftAlert, *, mention: str, resolution: str | None = None
) -> dict[str, Any]:
    build = payloads.label_shift_alert if alert.kind == AlertKind.LABEL_MIX else payloads.drift_alert
    return build(
        project, version, alert.evidence, revision=alert.revision, mention=mention, resolution=resolution
    )


def _post_alert(settings: Settings, engine: Engine, project_id: int, kind: AlertKind) -> int | None:
    """Raise an alert of `kind` on the project's version in production if its test says so (once per
    production move), and post it with its Rollback button. Returns the new alert's id, or None."""
    raise_alert = pilot.raise_label_shift_alert if kind == AlertKind.LABEL_MIX else pilot.raise_alert
    with session_scope(engine) as session:
        project = session.get(Project, project_id)
        if project is None:
            return None
        alert = raise_alert(session, settings, project)
        if alert is None:
            return None
        version = session.get(ModelVersion, alert.version_id)
        assert version is not None and alert.id is not None
        payload = _alert_payload(project.name, version.number, alert, mention=oncall_mention(settings))
        alert_id, channel = alert.id, alert.channel_id
    client = client_for(settings)
    if client is None:
        return alert_id
    posted = call(client, "chat_postMessage", channel=channel, **payload)
    if posted is not None:
        with session_scope(engine) as session:
            session.execute(
                update(DriftAlert).where(col(DriftAlert.id) == alert_id).values(message_ts=posted["ts"])
            )
    return alert_id


def drift_check(settings: Settings, engine: Engine, project_id: int) -> int | None:
    """Test the acceptance of the project's version in production; when it dropped, post the alert."""
    return _post_alert(settings, engine, project_id, AlertKind.ACCEPTANCE)


def label_mix_check(settings: Settings, engine: Engine, project_id: int) -> int | None:
    """Compare the labels the version in production predicts with its training mix; when they
    shifted, post the alert."""
    return _post_alert(settings, engine, project_id, AlertKind.LABEL_MIX)


def resolve_alerts(settings: Settings, engine: Engine, project_name: str, resolution: str) -> list[int]:
    """Resolve the project's open alerts on versions no longer in production, and show it on each
    alert (its Rollback button replaced by how it was resolved). Returns the alerts resolved."""
    updates = []
    with session_scope(engine) as session:
        project = projects.get_project(session, project_name)
        for alert in pilot.resolve_alerts(session, project, resolution):
            version = session.get(ModelVersion, alert.version_id)
            assert version is not None and alert.id is not None
            payload = _alert_payload(project.name, version.number, alert, mention="", resolution=resolution)
            updates.append((alert.id, alert.channel_id, alert.message_ts, payload))
    client = client_for(settings)
    for _alert_id, channel, ts, payload in updates:
        if client is not None and ts:
            call(client, "chat_update", channel=channel, ts=ts, **payload)
    return [alert_id for alert_id, *_ in updates]


def shadow_check(settings: Settings, engine: Engine, project_id: int) -> bool:
    """Post the shadow report in the pilot channel once enough pilot messages are labeled (once per
    shadow version). True when it was posted now."""
    with session_scope(engine) as session:
        project = session.get(Project, project_id)
        if project is None:
            return False
        report = pilot.claim_shadow_report(session, settings, project)
        if report is None:
            return False
        payload = payloads.shadow_report(
            report, production_revision=versions.alias(session, project).revision
        )
        piloted = pilot.pilot_of(session, project)
        channel = piloted.channel_id if piloted else project.channel_id
    client = client_for(settings)
    if client is not None:
        call(client, "chat_postMessage", channel=channel, **payload)
    return True
