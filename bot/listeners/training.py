"""Training from Slack: `/finetune train <project> [key=value …]`, the status's `Train` button, `Cancel`.

Only project owners, ``FTBOT_TRAINERS`` and ``FTBOT_ADMINS`` may train; every attempt is audited.
The status message in the project thread is posted here (queued) and then kept up to date by the
worker.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from runner import audit, datasets, jobs, notify
from runner.db import session_scope
from runner.exceptions import DatasetError, TrainingRequestError
from runner.models import Project, TrainingRun
from runner.render import render
from runner.slackapi import call

if TYPE_CHECKING:
    from bot.app import Deps


def may_train(deps: Deps, project: Project, user_id: str) -> bool:
    settings = deps.settings
    return datasets.is_owner(project, user_id, settings.ftbot_admins) or user_id in settings.ftbot_trainers


def request_training(
    deps: Deps, client: WebClient, *, project_name: str, words: list[str], user_id: str, channel_id: str
) -> None:
    """Authorize, audit, enqueue and announce one training request; refusals are ephemeral."""

    def tell(text: str) -> None:
        call(
            client,
            "chat_postEphemeral",
            channel=channel_id,
            user=user_id,
            **render("notice.json.j2", text=text),
        )

    try:
        with session_scope(deps.engine) as session:
            project = datasets.get_project(session, project_name)
            allowed = may_train(deps, project, user_id)
            audit.record(
                session,
                user_id=user_id,
                action="train",
                allowed=allowed,
                project_id=project.id,
                target=" ".join(words)[:128],
            )
            if not allowed:
                tell(f"Only the owner of *{project.name}* (<@{project.owner_id}>) or a trainer may train it.")
                return
            run = jobs.start_training(
                session,
                settings=deps.settings,
                connection=deps.redis,
                project=project,
                overrides=jobs.parse_overrides(words),
                requested_by=user_id,
            )
            if run.channel_id is None:  # a project without a thread: report where it was asked
                run.channel_id = channel_id
                session.add(run)
            run_id = run.id
    except (DatasetError, TrainingRequestError) as exc:
        tell(str(exc))
        return
    assert run_id is not None
    notify.run_status(deps.engine, client, run_id)


def register(app: App, deps: Deps) -> None:
    @app.action("train_project")
    def on_train_button(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value = json.loads(body["actions"][0].get("value") or "{}")
        request_training(
            deps,
            client,
            project_name=str(value.get("p", "")),
            words=[],
            user_id=body["user"]["id"],
            channel_id=(body.get("channel") or {}).get("id")
            or (body.get("container") or {}).get("channel_id", ""),
        )

    @app.action("cancel_run")
    def on_cancel(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        run_id = int(json.loads(body["actions"][0].get("value") or "{}").get("r", 0))
        user_id = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id", "")
        with session_scope(deps.engine) as session:
            run = session.get(TrainingRun, run_id)
            project = session.get(Project, run.project_id) if run else None
            if run is None or project is None:
                return
            allowed = user_id == run.requested_by or may_train(deps, project, user_id)
            audit.record(
                session,
                user_id=user_id,
                action="cancel",
                allowed=allowed,
                project_id=project.id,
                target=f"run {run_id}",
            )
            if not allowed:
                call(
                    client,
                    "chat_postEphemeral",
                    channel=channel_id,
                    user=user_id,
                    **render(
                        "notice.json.j2",
                        text="Only who started the run, the owner or a trainer may cancel it.",
                    ),
                )
                return
            try:
                jobs.cancel(session, run, connection=deps.redis)
            except TrainingRequestError as exc:
                call(
                    client,
                    "chat_postEphemeral",
                    channel=channel_id,
                    user=user_id,
                    **render("notice.json.j2", text=str(exc)),
                )
                return
        notify.run_status(deps.engine, client, run_id)
