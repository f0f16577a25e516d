"""Global middleware: every request gets the app's `Deps` in its context, and each Slack event is
handled once, whatever Slack or the load balancer repeats, and kept until its listener finishes
(``bot/inbox.py``).

Bolt does not deduplicate: a retry (``X-Slack-Retry-Num``) or a redelivered ``event_id`` would run
the listener again, possibly on another replica. The event, body included, is inserted into the
database before the ack; the primary key turns a second delivery into a no-op, which is
acknowledged and dropped. A replay by ``bot.inbox`` (signed like any request, and naming the event in
a header) passes through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext, BoltRequest
from slack_bolt.response import BoltResponse

from bot import inbox
from bot.deps import Deps

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
