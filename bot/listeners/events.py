"""Mentions of the bot. (Every event the app manifest subscribes to has a listener, registered in
`bot.listeners.register`: Bolt answers an unhandled event with 404, which Slack counts as a failure.)
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.deps import deps_of
from bot.listeners import commands, interview
from runner.slack.client import call

MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def on_mention(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    """``@ftbot help`` answers with the help; any other mention by a person starts an interview.
    Mentions from integrations (workflows, other apps: no ``user``) get the help at most."""
    text = MENTION.sub("", str(event.get("text", ""))).strip()
    thread_ts = event.get("thread_ts") or event["ts"]
    user = event.get("user")
    if text.lower().split()[:1] == ["help"]:
        call(
            client,
            "chat_postMessage",
            channel=event["channel"],
            thread_ts=thread_ts,
            **commands.help_payload(),
        )
        return
    if not user or event.get("bot_id"):
        return  # an interview needs a person to answer it
    interview.begin(
        deps_of(context),
        client,
        channel_id=event["channel"],
        user_id=user,
        team_id=str(context.get("team_id") or ""),
        topic=text,
        source="mention",
        thread_ts=thread_ts,
    )
