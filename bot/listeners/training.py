"""Training from Slack: the status message's `Train`, `Pause`, `Resume` and `Cancel` buttons
(`/finetune train`, `pause` and `resume` are in `commands`). Who may is `runner.core.policy`'s to
decide; every attempt is audited there.
"""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.deps import Deps, deps_of
from bot.listeners import answers
from runner.core.exceptions import FtbotError
from runner.jobs import runs
from runner.slack import notify


def request_training(
    deps: Deps,
    client: WebClient,
    *,
    project_name: str,
    words: list[str],
    user_id: str,
    channel_id: str,
    response_url: str | None = None,
) -> None:
    """Authorize, audit, enqueue and announce one training request; refusals are ephemeral (through
    the request's response URL where the channel refuses the bot)."""
    try:
        run = runs.request_training(
            deps.engine,
            deps.settings,
            deps.person(client, user_id),
            project_name=project_name,
            overrides=runs.parse_overrides(words),
            connection=deps.redis,
            channel_id=channel_id,
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    assert run.id is not None
    notify.run_status(deps.engine, client, run.id)


def _channel(body: dict[str, Any]) -> str:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")


def on_train_button(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    value = json.loads(body["actions"][0].get("value") or "{}")
    request_training(
        deps_of(context),
        client,
        project_name=str(value.get("p", "")),
        words=[],
        user_id=body["user"]["id"],
        channel_id=_channel(body),
        response_url=body.get("response_url"),
    )


def run_control(
    deps: Deps,
    client: WebClient,
    *,
    verb: str,
    run_id: int,
    user_id: str,
    channel_id: str,
    response_url: str | None = None,
) -> None:
    """Cancel, pause or resume run `run_id` for a person (decided and audited by the service); a
    refusal is told to the person alone, and the run's status message is brought up to date."""
    person = deps.person(client, user_id)
    try:
        if verb == "cancel":
            runs.request_cancel(deps.engine, deps.settings, person, run_id, connection=deps.redis)
        elif verb == "pause":
            runs.request_pause(deps.engine, deps.settings, person, run_id, connection=deps.redis)
        else:
            if deps.redis is None:
                raise FtbotError("No job queue (REDIS_URL) here: a run cannot be resumed.")
            runs.request_resume(deps.engine, deps.settings, person, run_id, connection=deps.redis)
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    notify.run_status(deps.engine, client, run_id)


def _pressed(verb: str, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    run_control(
        deps_of(context),
        client,
        verb=verb,
        run_id=int(json.loads(body["actions"][0].get("value") or "{}").get("r", 0)),
        user_id=body["user"]["id"],
        channel_id=_channel(body),
        response_url=body.get("response_url"),
    )


def on_cancel(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _pressed("cancel", body, client, context)


def on_pause(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _pressed("pause", body, client, context)


def on_resume(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _pressed("resume", body, client, context)
