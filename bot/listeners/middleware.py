"""Global middleware: each Slack event is handled once, whatever Slack or the load balancer repeats,
and is kept until its listener finishes (``bot/inbox.py``).

Bolt does not deduplicate: a retry (``X-Slack-Retry-Num``) or a redelivered ``event_id`` would run
the listener again, possibly on another replica. The event, body included, is inserted into the
database before the ack; the primary key turns a second delivery into a conflict, which is
acknowledged and dropped. A replay by ``bot.inbox`` (signed like any request, and naming the event in
a header) passes through.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltRequest
from slack_bolt.response import BoltResponse

from bot import inbox

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)


def register(app: App, deps: Deps) -> None:
    @app.middleware
    def handle_each_event_once(req: BoltRequest, body: dict[str, Any], next: Any) -> BoltResponse | None:  # noqa: A002
        event_id = inbox.event_id_of(body)
        inbox.dispatching(None)
        if not event_id:
            return next()
        replay = event_id in (req.headers.get(inbox.REPLAY_HEADER) or ())
        if not replay and not inbox.record(deps.engine, event_id, body):
            log.info("duplicate event dropped", extra={"event_id": event_id})
            return BoltResponse(status=200, body="")
        inbox.dispatching(event_id)
        return next()
