"""Promote, roll back and discard model versions from Slack, with on-call rules and an audit log.

Promote and discard: project owners, ``FTBOT_TRAINERS`` and ``FTBOT_ADMINS``. Roll back: on-call
(``FTBOT_ONCALL``: user ids and/or user groups) and admins. Every attempt, allowed or refused, is
audited; every move is announced in the project's channel with who and why.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from runner import audit, datasets, registry
from runner.db import session_scope
from runner.exceptions import DatasetError, RegistryError
from runner.models import Project
from runner.registry import Move
from runner.render import render
from runner.slackapi import call

if TYPE_CHECKING:
    from bot.app import Deps

ROLES = {"promote": "owner or trainer", "discard": "owner or trainer", "rollback": "on-call"}


def allowed(deps: Deps, client: WebClient, action: str, project: Project, user_id: str) -> bool:
    settings = deps.settings
    if user_id in settings.ftbot_admins:
        return True
    if action == "rollback":
        users = [u for u in settings.ftbot_oncall if not u.startswith("S")]
        groups = [g for g in settings.ftbot_oncall if g.startswith("S")]
        return deps.directory.is_member(client, user_id, users, groups)
    return user_id == project.owner_id or user_id in settings.ftbot_trainers


def announce(client: WebClient, channel_id: str, move: Move) -> None:
    call(client, "chat_postMessage", channel=channel_id, **render("deployment.json.j2", move=move.__dict__))


def act(
    deps: Deps,
    client: WebClient,
    *,
    action: str,
    project_name: str,
    user_id: str,
    channel_id: str,
    number: int | None = None,
    expected: int | None | str = "current",
    reason: str = "",
) -> None:
    """Authorize, audit and apply one registry action; the person hears back either way."""

    def tell(text: str) -> None:
        call(
            client,
            "chat_postEphemeral",
            channel=channel_id,
            user=user_id,
            **render("notice.json.j2", text=text),
        )

    target = f"v{number}" if number is not None else ""
    try:
        with session_scope(deps.engine) as session:
            project = datasets.get_project(session, project_name)
            if not allowed(deps, client, action, project, user_id):
                audit.record(
                    session,
                    user_id=user_id,
                    action=action,
                    allowed=False,
                    project_id=project.id,
                    target=target,
                    detail=f"needs {ROLES[action]}",
                )
                tell(f"Only the {ROLES[action]} may {action} *{project.name}*; this attempt was logged.")
                return
            if action == "discard":
                registry.discard(session, project, number or 0, by=user_id)
                audit.record(
                    session,
                    user_id=user_id,
                    action=action,
                    allowed=True,
                    project_id=project.id,
                    target=target,
                )
                tell(f"v{number} of *{project.name}* is discarded.")
                return
            move = registry.audited_move(
                session,
                deps.settings,
                project,
                action,
                by=user_id,
                number=number,
                reason=reason,
                expected_production=expected,
            )
            channel = project.channel_id or channel_id
    except (DatasetError, RegistryError) as exc:
        tell(str(exc))
        return
    announce(client, channel, move)


def register(app: App, deps: Deps) -> None:
    def on_button(action: str) -> Any:
        def handler(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            value = json.loads(body["actions"][0].get("value") or "{}")
            act(
                deps,
                client,
                action=action,
                project_name=str(value.get("p", "")),
                user_id=body["user"]["id"],
                channel_id=(body.get("channel") or {}).get("id") or "",
                number=value.get("v"),
                expected=value.get("cur"),
                reason=f"from the evaluation summary of v{value.get('of', value.get('v'))}",
            )

        return handler

    app.action("promote_version")(on_button("promote"))
    app.action("rollback_version")(on_button("rollback"))
    app.action("discard_version")(on_button("discard"))
