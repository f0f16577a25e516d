"""Promote, roll back and discard model versions from Slack.

Promote and discard: project owners, ``FTBOT_TRAINERS`` and ``FTBOT_ADMINS``. Roll back: on-call
(``FTBOT_ONCALL``: user ids and/or user groups) and admins. `runner.core.policy` decides and audits
every attempt; every move is announced in the project's channel with who and why.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.deps import Deps, deps_of
from runner.core.db import session_scope
from runner.core.exceptions import FtbotError
from runner.core.models import Project
from runner.data import projects
from runner.registry import versions
from runner.registry.versions import Seen
from runner.slack import payloads
from runner.slack.client import call


def act(
    deps: Deps,
    client: WebClient,
    *,
    action: str,
    project_name: str,
    user_id: str,
    channel_id: str,
    number: int | None = None,
    expected: Seen | None = None,
    reason: str = "",
) -> None:
    """Apply one registry action as `user_id`; the person hears back either way."""
    person = deps.person(client, user_id)
    try:
        if action == "discard":
            discarded = versions.request_discard(
                deps.engine, deps.settings, person, project_name=project_name, number=number or 0
            )
            text = f"v{discarded} of *{project_name}* is discarded."
            call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **payloads.notice(text))
            return
        move = versions.request_move(
            deps.engine,
            deps.settings,
            person,
            action,
            project_name=project_name,
            number=number,
            reason=reason,
            expected=expected,
        )
    except FtbotError as exc:
        call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **payloads.notice(str(exc)))
        return
    with session_scope(deps.engine) as session:
        project: Project = projects.get_project(session, project_name)
        channel = project.channel_id or channel_id
    call(client, "chat_postMessage", channel=channel, **payloads.deployment(move))


def _button(action: str) -> Any:
    def handler(ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        ack()
        value = json.loads(body["actions"][0].get("value") or "{}")
        act(
            deps_of(context),
            client,
            action=action,
            project_name=str(value.get("p", "")),
            user_id=body["user"]["id"],
            channel_id=(body.get("channel") or {}).get("id") or "",
            number=value.get("v"),
            expected=Seen(value.get("cur")),
            reason=f"from the evaluation summary of v{value.get('of', value.get('v'))}",
        )

    handler.__name__ = f"on_{action}_button"
    return handler


on_promote_button = _button("promote")
on_rollback_button = _button("rollback")
on_discard_button = _button("discard")
