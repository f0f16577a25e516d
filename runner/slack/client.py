"""The Slack Web API client (slack_sdk only, so workers need no Bolt) and one guarded way to call it.

Rate limits (429 + Retry-After), dropped connections and Slack's 5xx are retried by slack_sdk's
retry handlers; any other error (ok:false) is logged and returned as None so that a listener
never crashes on Slack's answer and can tell the person what happened instead. Slack being
unreachable after the retries (no network, a timeout) is answered the same way, with the error
`UNREACHABLE`, so a loop over many messages (the reconciler's) finishes its pass.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from runner.core.config import Settings

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"  # the error `try_call` gives when Slack could not be reached at all


def make_client(settings: Settings) -> WebClient:
    """A WebClient for the bot token, pointed at ``SLACK_API_URL``, with retries for transient faults."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def call(client: WebClient, method: str, **kwargs: Any) -> SlackResponse | None:
    """Call a WebClient method by name (``"chat_postMessage"``); log and return None when Slack says no."""
    return try_call(client, method, **kwargs)[0]


def try_call(client: WebClient, method: str, **kwargs: Any) -> tuple[SlackResponse | None, str | None]:
    """Like `call`, but also return Slack's error code so the caller can react to a specific one."""
    try:
        return getattr(client, method)(**kwargs), None
    except SlackApiError as exc:
        error = str(exc.response.get("error"))
        log.warning(
            "slack call failed",
            extra={"slack_method": method, "slack_error": error, "status": exc.response.status_code},
        )
        return None, error
    except (SlackClientError, OSError) as exc:  # URLError and timeouts are OSErrors
        log.warning(
            "slack unreachable", extra={"slack_method": method, "error": f"{type(exc).__name__}: {exc}"}
        )
        return None, UNREACHABLE
