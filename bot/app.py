"""Build the Bolt app: its dependencies, the work pool that settles events, and the listeners.

The map from Slack ids to handlers reads in `bot/listeners/__init__.py`.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from bot import listeners
from bot.deps import Deps
from bot.directory import Directory
from bot.handoff import doorbell_client
from bot.inbox import InboxExecutor
from bot.listeners import datasets
from bot.tally import SharedThrottle
from runner.core.config import Settings
from runner.slack.client import make_client

log = logging.getLogger(__name__)


class FtbotApp(App):
    """Bolt's App, holding ftbot's `Deps` for the threads that serve it besides requests
    (`bot.tally.Repairer`)."""

    deps: Deps


def _same_token_notice(record: logging.LogRecord) -> bool:
    """Drop Bolt's notice that SLACK_BOT_TOKEN is unused when a client is given: the client we pass
    is built from that very token."""
    return "will be unused" not in record.getMessage()


# Bolt logs these with the whole request body (a ``response_url``, the verification token, what
# people typed); only their first words are kept.
_BODY_CARRYING = ("Invalid request signature detected", "A global middleware")


def _without_request_bodies(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    for start in _BODY_CARRYING:
        if message.startswith(start):
            record.msg, record.args = f"{start} (request body not logged)", None
    return True


def build_app(
    settings: Settings, engine: Engine, *, client: WebClient | None = None, socket_mode: bool = False
) -> FtbotApp:
    """The Bolt app with every listener registered.

    Args:
        settings: validated settings (the caller has checked the variables its mode needs).
        engine: the database engine (migrated).
        client: a WebClient to use instead of one built from settings (tests, benchmarks).
        socket_mode: True when requests come over Socket Mode (no request signatures).
    """
    settings.refuse_oauth_variables()
    bolt_logger = logging.getLogger("ftbot.bolt")
    bolt_logger.addFilter(_same_token_notice)
    bolt_logger.addFilter(_without_request_bodies)  # Bolt copies these onto its own loggers
    pool = InboxExecutor(engine, max_workers=settings.ftbot_work_threads, capacity=settings.ftbot_work_queue)
    options: dict[str, Any] = dict(
        client=client or make_client(settings),
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=not socket_mode,
        # Listeners ack on the request thread and hand their work to `pool` (bot/work.py), so an
        # ack never waits behind Slack calls.
        process_before_response=True,
        logger=bolt_logger,
        listener_executor=pool,
    )
    try:
        # auth.test now, at start: Bolt would otherwise call it while answering the first request.
        app = FtbotApp(**options, token_verification_enabled=True)
    except BoltError as exc:  # Slack unreachable or refusing for now: Bolt asks again on a request
        log.warning("auth.test failed at start; retried on the first request", extra={"error": str(exc)})
        app = FtbotApp(**options, token_verification_enabled=False)
    deps = Deps(
        settings=settings,
        engine=engine,
        directory=Directory(settings.ftbot_directory_ttl),
        tally=SharedThrottle(
            lambda project_id: datasets.refresh_tally(deps, app.client, project_id),
            settings.ftbot_tally_interval,
            doorbell_client(settings.redis_url),  # shared with event workers (bot.handoff)
        ),
        redis=Redis.from_url(settings.redis_url),
        pool=pool,
    )
    app.deps = deps
    listeners.register(app, deps)
    return app
