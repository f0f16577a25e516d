"""The Slack Web API client (slack_sdk only, so workers need no Bolt) and one guarded way to call it.

Rate limits (429 + Retry-After), dropped connections and Slack's 5xx are retried by slack_sdk's
retry handlers; any other error (ok:false) is logged and returned as None so that a listener
never crashes on Slack's answer and can tell the person what happened instead. Slack being
unreachable after the retries (no network, a timeout) is answered the same way, with the error
`UNREACHABLE`, so a loop over many messages (the reconciler's) finishes its pass.

Waiting out rate limits has a budget (``FTBOT_SLACK_RETRY_BUDGET`` seconds per call, all retries
together): a call whose next wait would overrun it gives up at once with Slack's ``ratelimited``,
instead of holding its thread for as long as Slack asks (a minute for ``conversations.replies``
outside the Marketplace). Callers that must not lose the work raise `SlackUnavailable` then, so an
event is replayed later.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from runner.core.config import Settings
from runner.core.exceptions import FtbotError

log = logging.getLogger(__name__)

# The error `try_call` gives when Slack could not be reached at all (Slack's own word for it).
UNREACHABLE = "service_unavailable"
# Errors that say "not now" rather than "no": the same call may well succeed later.
TRANSIENT = frozenset({"ratelimited", "rate_limited", UNREACHABLE, "fatal_error", "internal_error"})


class SlackUnavailable(FtbotError):
    """Slack could not be reached or kept refusing (rate limits) within the retry budget."""


class RateLimitBudget(RateLimitErrorRetryHandler):
    """Retries a 429 after Slack's ``Retry-After``, while the waits of one call fit in `budget` seconds.

    slack_sdk's own handler sleeps whatever Slack asks, up to `max_retry_count` times; a minute-long
    ``Retry-After`` then holds the calling thread for minutes. This one gives up instead (the 429
    surfaces as ``SlackApiError`` with error ``ratelimited``), leaving the retry to whoever can wait.
    """

    def __init__(self, budget: float, max_retry_count: int = 3) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.budget = budget

    @staticmethod
    def _wait(response: HttpResponse) -> float:
        for name, values in response.headers.items():
            if name.lower() == "retry-after" and values:
                try:
                    return float(values[0])
                except ValueError:
                    break
        return 1.0

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        waited = float((state.custom_values or {}).get("ftbot_waited", 0.0))
        return waited + self._wait(response) <= self.budget

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        assert response is not None  # _can_retry allows retries of 429 answers only
        waited = float((state.custom_values or {}).get("ftbot_waited", 0.0))
        # A little jitter spreads the retries of calls that were refused together, within the budget.
        duration = min(self._wait(response) + random.random() * 0.5, max(self.budget - waited, 0.0))
        state.custom_values = {**(state.custom_values or {}), "ftbot_waited": waited + duration}
        state.next_attempt_requested = True
        time.sleep(duration)
        state.increment_current_attempt()


def make_client(settings: Settings) -> WebClient:
    """A WebClient for the bot token, pointed at ``SLACK_API_URL``, with retries for transient faults
    (rate-limit waits within ``FTBOT_SLACK_RETRY_BUDGET`` seconds per call)."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            RateLimitBudget(settings.ftbot_slack_retry_budget),
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def call(client: WebClient, method: str, **kwargs: Any) -> SlackResponse | None:
    """Call a WebClient method by name (``"chat_postMessage"``); log and return None when Slack says no."""
    return try_call(client, method, **kwargs)[0]


def try_call(client: WebClient, method: str, **kwargs: Any) -> tuple[SlackResponse | None, str | None]:
    """Like `call`, but also return Slack's error code so the caller can react to a specific one.

    A connection that could not be made (after its retries) reads as ``service_unavailable``.
    """
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


def must_call(client: WebClient, method: str, **kwargs: Any) -> SlackResponse | None:
    """Like `call`, but a transient failure (rate limits beyond the budget, Slack unreachable) raises
    `SlackUnavailable`, so that an event whose work needs this answer fails and is replayed later.

    Raises:
        SlackUnavailable: Slack said "not now" (see `TRANSIENT`).
    """
    response, error = try_call(client, method, **kwargs)
    if error in TRANSIENT:
        raise SlackUnavailable(f"{method}: {error}")
    return response
