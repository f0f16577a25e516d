"""How the person who acted hears back, and what Slack's refusals mean in words.

An ephemeral message in the channel is the usual answer, but Slack refuses it where the bot is not a
member, and every Web API call can be rate-limited. A request that came with a ``response_url``
(slash commands, buttons, message shortcuts; ftbot carries a command's into the modals it opens)
can still be answered through it: response URLs are not Web API calls and work in any channel. The
last resort is a direct message from the app (its Messages tab).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from runner.slack import payloads
from runner.slack.client import try_call

log = logging.getLogger(__name__)

# Slack's error codes, as advice to the person who acted.
ADVICE = {
    "not_in_channel": "I am not a member of this channel: invite me with `/invite @ftbot`, then try again.",
    "channel_not_found": "I cannot see this channel (private channels need an invitation): invite me with "
    "`/invite @ftbot`, then try again.",
    "is_archived": "This channel is archived.",
    "ratelimited": "Slack is rate-limiting ftbot right now; please try again in a minute.",
    "service_unavailable": "Slack could not be reached; please try again in a minute.",
    "msg_too_long": "The message was too long for Slack.",
    "invalid_blocks": "Slack refused the message's layout.",
    "invalid_blocks_format": "Slack refused the message's layout.",
    "expired_trigger_id": "Slack took too long to hand the request over; please try again.",
    "restricted_action": "A workspace setting does not allow ftbot to post here.",
}


def explain(error: str | None) -> str:
    """Advice for Slack's error code `error` (its code is named for anyone asking for help)."""
    return ADVICE.get(error or "", "") + f" (Slack's answer: `{error}`)"


def via_response_url(response_url: str | None, payload: dict[str, Any], *, replace: bool = False) -> bool:
    """Post `payload` (``{"text", "blocks"}``) to a response URL, ephemeral; True if Slack took it.

    Args:
        replace: replace the message the button that gave this response URL was on.
    """
    if not response_url:
        return False
    try:
        response = WebhookClient(response_url, timeout=10).send(
            **payload, response_type="ephemeral", replace_original=replace
        )
    except Exception:
        log.warning("response_url unreachable", exc_info=True)
        return False
    if response.status_code != 200:
        log.warning("response_url refused", extra={"status": response.status_code, "body": response.body})
        return False
    return True


def to_person(
    client: WebClient,
    *,
    channel: str,
    user: str,
    payload: dict[str, Any],
    response_url: str | None = None,
    thread_ts: str | None = None,
    direct: bool = False,
) -> bool:
    """Show `payload` to `user` alone: an ephemeral in `channel`, else through `response_url`, else
    (with `direct`) a direct message. True when one of them went through.
    """
    thread = {"thread_ts": thread_ts} if thread_ts else {}
    posted, error = try_call(client, "chat_postEphemeral", channel=channel, user=user, **thread, **payload)
    if posted is not None or via_response_url(response_url, payload):
        return True
    if direct:
        posted, error = try_call(client, "chat_postMessage", channel=user, **payload)
        if posted is not None:
            return True
    log.warning("could not tell a person", extra={"user": user, "slack_error": error})
    return False


def tell(client: WebClient, *, channel: str, user: str, text: str, **options: Any) -> bool:
    """`to_person` with a one-section notice."""
    return to_person(client, channel=channel, user=user, payload=payloads.notice(text), **options)
