"""Training from Slack: `Train` shows the preflight estimate with `Confirm` (or, over the project's
GPU-hour budget, `Approve` for admins) and `Cancel`, and only a confirmation queues the run; the
status message's `Pause`, `Resume` and `Cancel` buttons (`/finetune train`, `pause` and `resume`
are in `commands`). Who may is `runner.core.policy`'s to decide; every attempt is audited there.
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
    """Authorize, audit and estimate one training request, then show the estimate with Confirm and
    Cancel (nothing is queued before Confirm); refusals are ephemeral (through the request's
    response URL where the channel refuses the bot)."""
    try:
        request = runs.propose_training(
            deps.engine,
            deps.settings,
            deps.person(client, user_id),
            project_name=project_name,
            overrides=runs.parse_overrides(words),
            channel_id=channel_id,
        )
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    assert request.id is not None
    error = notify.training_request(deps.engine, client, request.id, admins=deps.settings.ftbot_admins)
    if error:
        answers.tell(
            client,
            channel=channel_id,
            user=user_id,
            text="I could not post the estimate to confirm: " + answers.explain(error),
            response_url=response_url,
        )


def decide_request(
    deps: Deps,
    client: WebClient,
    *,
    verb: str,
    request_id: int,
    user_id: str,
    channel_id: str,
    response_url: str | None = None,
) -> None:
    """Confirm, approve or cancel training request `request_id` for a person (decided and audited by
    the service). A confirmed request's message becomes its run's status message; a refusal is told
    to the person alone; a request found over the budget is shown again with its Approve button."""
    person = deps.person(client, user_id)
    admins = deps.settings.ftbot_admins
    try:
        if verb == "cancel":
            runs.cancel_request(deps.engine, deps.settings, person, request_id)
        else:
            run = runs.confirm_training(
                deps.engine,
                deps.settings,
                person,
                request_id,
                connection=deps.redis,
                approve=verb == "approve",
            )
            assert run.id is not None
            notify.run_status(deps.engine, client, run.id)
            return
    except runs.OverBudget as exc:
        notify.training_request(deps.engine, client, request_id, admins=admins)
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        return
    except FtbotError as exc:
        answers.tell(client, channel=channel_id, user=user_id, text=str(exc), response_url=response_url)
        run_id = runs.run_of_request(deps.engine, request_id)
        if run_id is not None:  # confirmed, but Redis could not take it: the run failed; show it
            notify.run_status(deps.engine, client, run_id)
        return
    notify.training_request(deps.engine, client, request_id, admins=admins)


def _request_pressed(verb: str, body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    deps = deps_of(context)
    request_id = int(json.loads(body["actions"][0].get("value") or "{}").get("q", 0))
    container = body.get("container") or {}
    if container.get("message_ts") and not container.get("is_ephemeral"):
        notify.request_shown_at(deps.engine, request_id, str(container["message_ts"]))
    decide_request(
        deps,
        client,
        verb=verb,
        request_id=request_id,
        user_id=body["user"]["id"],
        channel_id=_channel(body),
        response_url=body.get("response_url"),
    )


def on_confirm(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _request_pressed("confirm", body, client, context)


def on_approve(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _request_pressed("approve", body, client, context)


def on_cancel_request(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    _request_pressed("cancel", body, client, context)


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
