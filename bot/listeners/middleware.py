"""Global middleware and the error seam.

Every request gets the app's `Deps` in its context; NUL characters are removed from every string of
its body before anything stores it (PostgreSQL cannot keep them, in text or JSON, so the rule is the
same on every database); each Slack event is handled once, whatever Slack or the load balancer
repeats, and kept until its listener finishes (``bot/inbox.py``). `error_seam` is the one place an
unexpected exception in a listener or middleware ends up: counted, logged with its traceback,
audited, and answered with a short message naming a reference to find it in the log.

Bolt does not deduplicate: a retry (``X-Slack-Retry-Num``) or a redelivered ``event_id`` would run
the listener again, possibly on another replica. The event, body included, is inserted into the
database before the ack; the primary key turns a second delivery into a no-op, which is
acknowledged and dropped. A replay by ``bot.inbox`` (signed like any request, and naming the event in
a header) passes through.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient

from bot import inbox
from bot.deps import Deps
from bot.http import request_kind
from bot.metrics import LISTENER_ERRORS
from runner.core import audit
from runner.core.db import session_scope
from runner.core.exceptions import DatasetError
from runner.data import projects, textnorm
from runner.slack import payloads
from runner.slack.client import call

log = logging.getLogger(__name__)


def provide(deps: Deps) -> Callable[..., BoltResponse | None]:
    """A middleware that puts `deps` in every request's context (handlers read it with `deps_of`)."""

    def with_deps(context: BoltContext, next: Callable[[], BoltResponse | None]) -> BoltResponse | None:  # noqa: A002
        context["deps"] = deps
        return next()

    return with_deps


def handle_each_event_once(
    req: BoltRequest,
    body: dict[str, Any],
    context: BoltContext,
    next: Callable[[], BoltResponse | None],  # noqa: A002
) -> BoltResponse | None:
    event_id = inbox.event_id_of(body)
    inbox.dispatching(None)
    if not event_id:
        return next()
    replay = event_id in (req.headers.get(inbox.REPLAY_HEADER) or ())
    if not replay and not inbox.record(context["deps"].engine, event_id, body):
        log.info("duplicate event dropped", extra={"event_id": event_id})
        return BoltResponse(status=200, body="")
    inbox.dispatching(event_id)
    return next()


def strip_nul_characters(
    body: dict[str, Any],
    next: Callable[[], BoltResponse | None],  # noqa: A002
) -> BoltResponse | None:
    """Remove NUL characters from the request body (in place) before any listener or store sees it."""
    textnorm.scrub_nul(body)
    return next()


def error_seam(deps: Deps) -> Callable[..., None]:
    """The app's error handler (see the module docstring)."""

    def on_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        kind = request_kind(body)
        reference = uuid.uuid4().hex[:8]
        LISTENER_ERRORS.labels(listener=kind).inc()
        log.error("listener failed", exc_info=error, extra={"request_kind": kind, "reference": reference})
        inbox.mark_failed(deps.engine, body, error)
        user, channel = _who_and_where(body)
        try:
            with session_scope(deps.engine) as session:
                audit.record(
                    session,
                    user_id=(user or "slack")[:32],
                    action="error",
                    allowed=True,
                    project_id=_project_named(deps, body),
                    target=f"{kind} {_what(body)}".strip(),
                    detail=f"failed: {type(error).__name__} (reference {reference})",
                )
        except Exception:  # the database is away: the log line above is what is left
            log.exception("could not audit a listener error", extra={"reference": reference})
        if user and channel:
            text = (
                f"Something went wrong on ftbot's side while handling that (reference `{reference}`). "
                "It was logged for the operators; try again, or give them the reference."
            )
            try:
                call(client, "chat_postEphemeral", channel=channel, user=user, **payloads.notice(text))
            except Exception:
                log.exception("could not answer a listener error", extra={"reference": reference})

    return on_error


def _who_and_where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The person to answer and the channel to answer in, for any kind of request."""
    if body.get("command"):
        return _text(body.get("user_id")), _text(body.get("channel_id"))
    event = body.get("event")
    if isinstance(event, dict):
        item = _dict(event.get("item"))
        return _text(event.get("user")), _text(event.get("channel") or item.get("channel"))
    user, channel, container = (
        _dict(body.get("user")),
        _dict(body.get("channel")),
        _dict(body.get("container")),
    )
    return _text(user.get("id")), _text(channel.get("id") or container.get("channel_id"))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _what(body: dict[str, Any]) -> str:
    """The subcommand, action or view the request was about (for the audit row)."""
    if body.get("command"):
        words = str(body.get("text") or "").split()
        return f"{body['command']} {words[0] if words else ''}".strip()
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return str(actions[0].get("action_id") or "")
    view = body.get("view")
    if isinstance(view, dict):
        return str(view.get("callback_id") or "")
    return str(body.get("callback_id") or "")


def _project_named(deps: Deps, body: dict[str, Any]) -> int | None:
    """The project a failed request was about, when it names one (a button's ``p``, a command's
    argument), so the error shows in that project's audit log."""
    name: Any = None
    if body.get("command"):
        words = str(body.get("text") or "").split()
        name = words[1] if len(words) > 1 else None
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        try:
            value = json.loads(actions[0].get("value") or "{}")
        except ValueError:
            value = None
        if isinstance(value, dict):
            name = value.get("p")
    if not isinstance(name, str) or not name:
        return None
    try:
        with session_scope(deps.engine) as session:
            return projects.get_project(session, name.lower()[:64]).id
    except DatasetError:
        return None
