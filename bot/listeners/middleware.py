"""Global middleware: each Slack event is handled once, whatever Slack or the load balancer repeats.

Bolt does not deduplicate: a retry (``X-Slack-Retry-Num``) or a redelivered ``event_id`` would run
the listener again, possibly on another replica. The event id is inserted into the database; the
primary key turns a second delivery into a conflict, which is acknowledged and dropped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_bolt.response import BoltResponse
from sqlalchemy.exc import IntegrityError

from runner.db import session_scope
from runner.models import ProcessedEvent

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    @app.middleware
    def handle_each_event_once(body: dict[str, Any], next: Any) -> BoltResponse | None:  # noqa: A002
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return next()
        try:
            with session_scope(deps.engine) as session:
                session.add(
                    ProcessedEvent(event_id=event_id, event_type=body.get("event", {}).get("type", ""))
                )
        except IntegrityError:
            log.info("duplicate event dropped", extra={"event_id": event_id})
            return BoltResponse(status=200, body="")
        return next()
