"""Promote, roll back and discard model versions from Slack.

Promote and discard: project owners, ``FTBOT_TRAINERS`` and ``FTBOT_ADMINS``. Roll back: on-call
(``FTBOT_ONCALL``: user ids and/or user groups) and admins. `runner.core.policy` decides and audits
every attempt; every move is announced in the project's channel with who and why.

Buttons carry the move they were drawn from (the alias revision) and where they were shown, so a
stale button does nothing and says so, and the deployment history names the button really pressed.
A button value that ftbot did not make is an error for the listener seam (audited and answered).
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.deps import Deps, deps_of
from bot.listeners import pilot as pilot_listeners
from runner.core.db import session_scope
from runner.core.exceptions import FtbotError, RolledBackVersion
from runner.core.models import Project
from runner.data import projects
from runner.registry import versions
from runner.registry.versions import Seen
from runner.slack import payloads
from runner.slack.client import call

# Where a button was shown, for the deployment history ("from the evaluation summary of v3").
SOURCES = {
    "summary": "from the evaluation summary of v{of}",
    "announcement": "from the promotion announcement of v{cur}",
    "confirmation": "confirmed after a warning that v{v} had been rolled back",
    "drift": "from the drift alert on v{cur}",
    "shadow": "from the shadow report of v{v}",
}


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
    again: bool = False,
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
            again=again,
        )
    except RolledBackVersion as exc:
        call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **_promote_again(deps, exc))
        return
    except FtbotError as exc:
        call(client, "chat_postEphemeral", channel=channel_id, user=user_id, **payloads.notice(str(exc)))
        return
    with session_scope(deps.engine) as session:
        project: Project = projects.get_project(session, project_name)
        channel = project.channel_id or channel_id
    call(client, "chat_postMessage", channel=channel, **payloads.deployment(move))
    verb = "promoted" if move.action == "promote" else "rolled back"
    moved = f"v{move.previous} → v{move.version}" if move.previous else f"v{move.version}"
    pilot_listeners.after_move(
        deps,
        project_name,
        f"{payloads.slack_person(move.by)} {verb} {project_name}: {moved} ({move.reason}).",
    )


def _promote_again(deps: Deps, refused: RolledBackVersion) -> dict[str, Any]:
    with session_scope(deps.engine) as session:
        project = projects.get_project(session, refused.project)
        serving = versions.production(session, project)
        revision = versions.alias(session, project).revision
    return payloads.promote_again(
        refused.project,
        refused.version,
        refused.note,
        production_version=serving.number if serving else None,
        production_revision=revision,
    )


def button_value(body: dict[str, Any]) -> dict[str, Any]:
    """The pressed button's value, as ftbot wrote it.

    Raises:
        ValueError: not a JSON object (the button was not made by ftbot).
    """
    value = json.loads(body["actions"][0].get("value") or "{}")
    if not isinstance(value, dict):
        raise ValueError("the button's value is not an object")
    return value


def _int(value: dict[str, Any], key: str) -> int | None:
    raw = value.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"the button's {key!r} is not a version number: {str(raw)[:40]!r}")
    return raw


def _reason(action: str, value: dict[str, Any]) -> str:
    source = value.get("src")
    if source not in SOURCES:  # drawn before buttons said where they were shown
        if action == "rollback" and value.get("of") in (None, value.get("cur")):
            source = "announcement"
        else:
            source = "summary"
    numbers = {"v": value.get("v"), "cur": value.get("cur"), "of": value.get("of", value.get("v"))}
    return SOURCES[str(source)].format(**numbers)


def _button(action: str) -> Any:
    def handler(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        value = button_value(body)
        project_name = value.get("p")
        if not isinstance(project_name, str):
            raise ValueError("the button names no project")
        act(
            deps_of(context),
            client,
            action=action,
            project_name=project_name,
            user_id=body["user"]["id"],
            channel_id=(body.get("channel") or {}).get("id") or "",
            number=_int(value, "v"),
            expected=Seen(_int(value, "cur"), _int(value, "rev")),
            reason=_reason(action, value),
            again=bool(value.get("again")),
        )

    handler.__name__ = f"on_{action}_button"
    return handler


on_promote_button = _button("promote")
on_rollback_button = _button("rollback")
on_discard_button = _button("discard")
