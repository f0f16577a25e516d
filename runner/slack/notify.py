"""Messages the runner posts to Slack (through slack_sdk's WebClient only, so workers need no Bolt).

Each function reads what it needs in a unit of work of its own, closes it, and only then calls
Slack. A worker without ``SLACK_BOT_TOKEN`` (a CLI run, a laptop) skips Slack and keeps going.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from runner.core.config import Settings
from runner.core.db import session_scope
from runner.core.models import (
    AlertKind,
    Comparison,
    ComparisonItem,
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
from runner.registry import abtests, pilot, versions
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
        payload = payloads.eval_summary(
            project, version, version.evaluation, abtests.version_lines(session, version)
        )
        channel, thread = project.channel_id, project.root_ts
        chart = Path(version.evaluation["chart"])
        title = f"{project.name} v{version.number} evaluation"
    if not channel:
        return
    posted = call(client, "chat_postMessage", channel=channel, thread_ts=thread, **payload)
    if posted is not None:  # kept, so that later results (a blind A/B) are shown on it
        with session_scope(engine) as session:
            session.execute(
                update(ModelVersion)
                .where(col(ModelVersion.id) == version_id)
                .values(summary_channel_id=channel, summary_ts=posted["ts"])
            )
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
    The suggestion's ts is stored, so reviewers' reactions on it find the prediction. A shadow answer
    is shown to the project's reviewers alone, when its owner chose so (`show_shadow`)."""
    client = client_for(settings)
    for prediction_id in prediction_ids:
        with session_scope(engine) as session:
            prediction = session.get(Prediction, prediction_id)
            if prediction is None or not prediction.channel_id or prediction.status != PredictionStatus.DONE:
                continue
            if prediction.shadow:
                shown = _shadow_to_show(session, prediction) if client is not None else None
                if shown is None:
                    continue
            elif prediction.suggestion_ts:
                continue
            else:
                shown = None
                project = session.get(Project, prediction.project_id)
                version = session.get(ModelVersion, prediction.version_id)
                assert project is not None and version is not None
                payload = payloads.pilot_suggestion(project, version.number, prediction)
                channel, thread = prediction.channel_id, prediction.message_ts
        if client is None:
            continue
        if shown is not None:
            show_shadow(client, shown)
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


@dataclass(frozen=True)
class ShadowShown:
    """A shadow answer to show to a project's reviewers, and where."""

    reviewers: list[str]  # users and user groups, as the project lists them
    channel: str
    thread_ts: str
    payload: dict[str, Any]


def _shadow_to_show(session: Session, prediction: Prediction) -> ShadowShown | None:
    """The shadow answer to show to the reviewers now (claimed: shown once), or None."""
    if not pilot.claim_shadow_showing(session, prediction):
        return None
    project = session.get(Project, prediction.project_id)
    version = session.get(ModelVersion, prediction.version_id)
    assert project is not None and version is not None
    serving = versions.production(session, project)
    payload = payloads.shadow_suggestion(
        project, version.number, serving.number if serving else 0, prediction
    )
    listed = [*project.reviewers, *project.reviewer_groups]
    return ShadowShown(listed, prediction.channel_id, prediction.message_ts, payload)


def reviewers_of(client: WebClient, listed: list[str]) -> list[str]:
    """Reviewers as user ids: the users listed, and the members of the user groups listed (asked of
    Slack now; a group Slack will not list adds no one)."""
    people = [p for p in listed if not is_group(p)]
    for group in filter(is_group, listed):
        found = call(client, "usergroups_users_list", usergroup=group)
        people += [str(u) for u in (found.get("users") or [])] if found is not None else []
    return list(dict.fromkeys(people))


def show_shadow(client: WebClient, shown: ShadowShown) -> int:
    """Show a shadow answer to each reviewer, in the message's thread, where only they see it
    (chat.postEphemeral; Slack refuses reviewers who are not in the channel). Returns how many saw it."""
    seen = 0
    for reviewer in reviewers_of(client, shown.reviewers):
        if call(
            client,
            "chat_postEphemeral",
            channel=shown.channel,
            user=reviewer,
            thread_ts=shown.thread_ts,
            **shown.payload,
        ):
            seen += 1
    return seen


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


def claim_alert_chart(engine: Engine, alert_id: int) -> bool:
    """Claim the upload of an alert's chart (once per alert); False when it is claimed already."""
    with session_scope(engine) as session:
        claimed = session.execute(
            update(DriftAlert)
            .where(col(DriftAlert.id) == alert_id, col(DriftAlert.chart_at).is_(None))
            .values(chart_at=utcnow())
        )
        return bool(claimed.rowcount)  # type: ignore[attr-defined]


def upload_alert_chart(
    settings: Settings, engine: Engine, alert_id: int, chart: Path, *, title: str, claimed: bool = False
) -> bool:
    """Upload an alert's chart into the alert's thread (files_upload_v2, as the evaluation summary's),
    once: the upload is claimed first, and the claim given back when Slack refuses it (so a retry
    uploads it). True when it was uploaded now.

    Raises:
        RuntimeError: Slack refused the upload (the claim was given back; the job is retried).
    """
    client = client_for(settings)
    if client is None:
        return False
    with session_scope(engine) as session:
        alert = session.get(DriftAlert, alert_id)
        if alert is None:
            return False
        channel, thread = alert.channel_id, alert.message_ts
    if not claimed and not claim_alert_chart(engine, alert_id):
        return False
    thread_ts = {"thread_ts": thread} if thread else {}
    uploaded, error = try_call(
        client,
        "files_upload_v2",
        channel=channel,
        file=str(chart),
        filename="acceptance.png",
        title=title,
        alt_txt=title,
        **thread_ts,
    )
    if uploaded is None:
        with session_scope(engine) as session:
            session.execute(update(DriftAlert).where(col(DriftAlert.id) == alert_id).values(chart_at=None))
        raise RuntimeError(f"Slack refused the chart of alert {alert_id}: {error}")
    return True


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


# --- blind A/B ---------------------------------------------------------------------------------


def post_comparison_items(settings: Settings, engine: Engine) -> list[int]:
    """Post each comparison item whose two answers are in and that is not posted yet, in the order
    of its position, as a reply to its comparison's header; the message's ts is stored, so
    reviewers' reactions on it find the item. Returns the items posted."""
    client = client_for(settings)
    posted_items = []
    with session_scope(engine) as session:
        ready = abtests.ready_items(session)
    for item_id in ready:
        with session_scope(engine) as session:
            if client is None or not abtests.claim_post(session, item_id):
                continue
            item = session.get(ComparisonItem, item_id)
            assert item is not None
            comparison = session.get(Comparison, item.comparison_id)
            assert comparison is not None and comparison.id is not None
            project = session.get(Project, comparison.project_id)
            a, b = (
                session.get(Prediction, item.prediction_a_id),
                session.get(Prediction, item.prediction_b_id),
            )
            assert project is not None and a is not None and b is not None
            payload = payloads.comparison_item(
                project.name, comparison.id, item.position, comparison.n, input_text=item.input_text, a=a, b=b
            )
            channel, thread = comparison.channel_id, comparison.thread_ts
        posted = call(client, "chat_postMessage", channel=channel, thread_ts=thread, **payload)
        # Posted: its ts finds it for reactions. Refused: the claim is released for the next batch.
        done = {"message_ts": posted["ts"]} if posted is not None else {"posted_at": None}
        with session_scope(engine) as session:
            session.execute(update(ComparisonItem).where(col(ComparisonItem.id) == item_id).values(**done))
        if posted is not None:
            posted_items.append(item_id)
    return posted_items


def reveal_comparison(settings: Settings, engine: Engine, comparison_id: int) -> None:
    """A comparison closed: every item shows which version wrote A and which B (and its votes), the
    header says it is closed, the result is posted in its thread (once), and the evaluation
    summaries of the versions compared show it. Safe to run again after Slack refused part of it."""
    client = client_for(settings)
    if client is None:
        return
    updates = []
    with session_scope(engine) as session:
        comparison = abtests.get(session, comparison_id)
        project = session.get(Project, comparison.project_id)
        assert project is not None and comparison.result is not None
        numbers = {v.id: v.number for v in versions.versions(session, project)}
        votes = abtests.live_votes(session, comparison_id)
        for item in abtests.items(session, comparison_id):
            a, b = (
                session.get(Prediction, item.prediction_a_id),
                session.get(Prediction, item.prediction_b_id),
            )
            assert a is not None and b is not None
            tally = {"a": 0, "b": 0, "tie": 0}
            for choice in votes.get(item.id or 0, {}).values():
                tally[str(choice)] += 1
            if item.message_ts:
                updates.append(
                    (
                        item.message_ts,
                        payloads.comparison_item(
                            project.name,
                            comparison_id,
                            item.position,
                            comparison.n,
                            input_text=item.input_text,
                            a=a,
                            b=b,
                            revealed=(numbers[item.version_a_id], numbers[item.version_b_id]),
                            votes=tally,
                        ),
                    )
                )
        header = payloads.comparison_header(
            project.name,
            comparison_id,
            versions=len(comparison.version_ids),
            n=comparison.n,
            source=comparison.source,
            votes_needed=comparison.votes_needed,
            closed=True,
            closed_by=comparison.closed_by,
        )
        result = payloads.comparison_result(project.name, comparison_id, comparison.result)
        channel, thread = comparison.channel_id, comparison.thread_ts
        compared, result_posted = list(comparison.version_ids), comparison.result_ts is not None
    for ts, payload in updates:
        call(client, "chat_update", channel=channel, ts=ts, **payload)
    if thread:
        call(client, "chat_update", channel=channel, ts=thread, **header)
    posted = (
        None
        if result_posted
        else call(client, "chat_postMessage", channel=channel, thread_ts=thread, **result)
    )
    if posted is not None:
        with session_scope(engine) as session:
            session.execute(
                update(Comparison).where(col(Comparison.id) == comparison_id).values(result_ts=posted["ts"])
            )
    refresh_summaries(settings, engine, compared)


def refresh_summaries(settings: Settings, engine: Engine, version_ids: list[int]) -> None:
    """Show the latest results on the evaluation summaries of `version_ids` where they were posted."""
    client = client_for(settings)
    if client is None:
        return
    for version_id in version_ids:
        with session_scope(engine) as session:
            version = session.get(ModelVersion, version_id)
            if version is None or not version.evaluation or not version.summary_ts:
                continue
            project = session.get(Project, version.project_id)
            assert project is not None
            payload = payloads.eval_summary(
                project, version, version.evaluation, abtests.version_lines(session, version)
            )
            channel, ts = version.summary_channel_id or project.channel_id, version.summary_ts
        call(client, "chat_update", channel=channel, ts=ts, **payload)
