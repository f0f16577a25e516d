"""Events API listeners. Every event the app manifest subscribes to has a listener here:
Bolt answers an unhandled event with 404, which Slack counts as a delivery failure.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.listeners import commands, interview
from runner.slackapi import call

if TYPE_CHECKING:
    from bot.app import Deps

MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def register(app: App, deps: Deps) -> None:
    @app.event("app_mention")
    def on_mention(event: dict[str, Any], client: WebClient, context: dict[str, Any]) -> None:
        text = MENTION.sub("", str(event.get("text", ""))).strip()
        thread_ts = event.get("thread_ts") or event["ts"]
        if text.lower().split()[:1] == ["help"]:
            call(
                client,
                "chat_postMessage",
                channel=event["channel"],
                thread_ts=thread_ts,
                **commands.help_payload(),
            )
            return
        interview.begin(
            deps,
            client,
            channel_id=event["channel"],
            user_id=event["user"],
            team_id=str(context.get("team_id") or ""),
            topic=text,
            source="mention",
            thread_ts=thread_ts,
        )
