"""Acts as Slack's side of the conversation in tests: signed HTTP requests to the running bot.

Slash commands and events are sent as Slack sends them; buttons are pressed by echoing the
action_id, block_id and value of a button the bot actually posted (found in the emulator's
store), as Slack's client does.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TEAM_ID = "T0001"
APP_ID = "A0FTBOT"
_counter = itertools.count(1)


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass
class Reply:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackSide:
    """Sends what Slack would send to the bot at `url` (its ``/slack/events`` endpoint)."""

    def __init__(self, url: str, signing_secret: str, emulator: Any) -> None:
        self.url = url
        self.secret = signing_secret
        self.emulator = emulator

    # --- transport ---------------------------------------------------------------------------

    def post(
        self,
        body: str,
        content_type: str,
        *,
        signed: bool = True,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        secret: str | None = None,
    ) -> Reply:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if signed:
            all_headers.update(sign(secret or self.secret, body, timestamp))
        return self.send(body.encode(), all_headers)

    def send(self, body: bytes, headers: dict[str, str]) -> Reply:
        """POST ``body`` as it is, with ``headers``, to the bot (the transport; benchmarks swap it)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, response.read().decode(), dict(response.headers))
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read().decode(), dict(error.headers))

    # --- what Slack sends --------------------------------------------------------------------

    def slash(
        self,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = "CGENERAL",
        command: str = "/finetune",
        response_key: str | None = None,
        **post_options: Any,
    ) -> Reply:
        """A slash command; what the bot posts to its response URL shows under `response_key`."""
        n = next(_counter)
        response_key = response_key or f"cmd{n}"
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "response_url": self.emulator.response_url(response_key),
            "trigger_id": self.emulator.new_trigger_id(),
        }
        return self.post(urllib.parse.urlencode(form), "application/x-www-form-urlencoded", **post_options)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        **post_options: Any,
    ) -> Reply:
        envelope = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": APP_ID,
            "event": {"event_ts": event.get("ts", f"{time.time():.6f}"), **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(_counter):010d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": self.emulator.bot_user_id, "is_bot": True}],
        }
        headers = dict(post_options.pop("headers", {}) or {})
        if retry_num is not None:
            headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
        return self.post(json.dumps(envelope), "application/json", headers=headers, **post_options)

    def mention(self, text: str, *, user: str = "UALICE", channel: str = "CGENERAL", **options: Any) -> Reply:
        """An ``app_mention`` as Slack delivers it (the message is stored in the emulator too)."""
        message = self.emulator.post_user_message(channel, f"<@{self.emulator.bot_user_id}> {text}", user)
        event = {
            "type": "app_mention",
            "user": user,
            "text": message["text"],
            "ts": message["ts"],
            "channel": channel,
        }
        return self.event(event, **options)

    def press(
        self,
        message: dict[str, Any],
        label: str,
        *,
        user: str = "UALICE",
        channel: str = "CGENERAL",
        response_key: str | None = None,
        **post_options: Any,
    ) -> Reply:
        """Press the button labelled `label` in `message` (a message the bot posted). What the bot
        posts to the press's response URL shows under `response_key` in the emulator's responses."""
        block, element = find_button(message, label)
        action = {
            "type": "button",
            "action_id": element["action_id"],
            "block_id": block.get("block_id", ""),
            "text": element["text"],
            "value": element.get("value", ""),
            "action_ts": f"{time.time():.6f}",
            **({"style": element["style"]} if "style" in element else {}),
        }
        return self._act(message, action, user, channel, response_key, **post_options)

    def choose(
        self,
        message: dict[str, Any],
        block_id: str,
        value: str,
        *,
        user: str = "UALICE",
        channel: str = "CGENERAL",
        response_key: str | None = None,
        **post_options: Any,
    ) -> Reply:
        """Pick the option `value` of the select menu in block `block_id` of `message`."""
        block = next(b for b in message.get("blocks", []) if b.get("block_id") == block_id)
        menu = next(e for e in block["elements"] if e.get("type") == "static_select")
        option = next(o for o in menu["options"] if o["value"] == value)
        action = {
            "type": "static_select",
            "action_id": menu["action_id"],
            "block_id": block_id,
            "selected_option": option,
            "placeholder": menu.get("placeholder"),
            "action_ts": f"{time.time():.6f}",
        }
        return self._act(message, action, user, channel, response_key, **post_options)

    def _act(
        self,
        message: dict[str, Any],
        action: dict[str, Any],
        user: str,
        channel: str,
        response_key: str | None,
        **post_options: Any,
    ) -> Reply:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel,
                "is_ephemeral": False,
                **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
            },
            "trigger_id": self.emulator.new_trigger_id(),
            "team": {"id": TEAM_ID, "domain": "acme"},
            "channel": {"id": channel, "name": "general"},
            "message": message,
            "response_url": self.emulator.response_url(response_key or f"act{next(_counter)}"),
            "actions": [action],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self.post(body, "application/x-www-form-urlencoded", **post_options)


def buttons(message: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every button in `message`, by its label."""
    found = {}
    for block in message.get("blocks", []):
        elements = list(block.get("elements", []))
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("type") == "button":
                found[element["text"]["text"]] = (block, element)
    return found


def find_button(message: dict[str, Any], label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = buttons(message)
    if label not in found:
        raise AssertionError(f"no button {label!r} in message; buttons: {sorted(found)}")
    return found[label]


def view_state(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The ``view.state.values`` Slack sends on submit, for the input blocks of `view` filled with `values`.

    `values` maps block_id → a string (text and number inputs, static selects by option value) or
    a list of user ids (user selects). Blocks not named are left empty, as a person would.
    """
    state: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input" or block["block_id"] not in values:
            continue
        element, value = block["element"], values[block["block_id"]]
        kind = element["type"]
        if kind == "static_select":
            option = next(o for o in element["options"] if o["value"] == value)
            entry: dict[str, Any] = {"type": kind, "selected_option": option}
        elif kind == "multi_users_select":
            entry = {"type": kind, "selected_users": list(value)}
        else:
            entry = {"type": kind, "value": str(value)}
        state[block["block_id"]] = {element["action_id"]: entry}
    return state


def _view_payload(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {**view, "state": {"values": view_state(view, values)}}


class SlackPeople(SlackSide):
    """`SlackSide` plus what people do in channels: reply in threads, react, submit modals."""

    def reply(self, channel: str, thread_ts: str, text: str, user: str) -> dict[str, Any]:
        """Post `text` as `user` in a thread (stored in the emulator) and deliver the message event."""
        message = self.emulator.post_user_message(channel, text, user, thread_ts=thread_ts)
        event = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": message["ts"],
            "thread_ts": thread_ts,
            "channel_type": "channel",
        }
        assert self.event(event).status == 200
        return message

    def react(
        self, channel: str, ts: str, emoji: str, user: str, *, added: bool = True, event_id: str | None = None
    ) -> Reply:
        event = {
            "type": "reaction_added" if added else "reaction_removed",
            "user": user,
            "reaction": emoji,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "item_user": "UALICE",
            "event_ts": f"{time.time():.6f}",
        }
        return self.event(event, event_id=event_id)

    def edit(self, channel: str, message: dict[str, Any], new_text: str) -> Reply:
        edited = {
            **message,
            "text": new_text,
            "edited": {"user": message.get("user"), "ts": f"{time.time():.6f}"},
        }
        event = {
            "type": "message",
            "subtype": "message_changed",
            "channel": channel,
            "hidden": True,
            "message": edited,
            "previous_message": message,
            "ts": f"{time.time():.6f}",
        }
        return self.event(event)

    def delete(self, channel: str, message: dict[str, Any]) -> Reply:
        event = {
            "type": "message",
            "subtype": "message_deleted",
            "channel": channel,
            "hidden": True,
            "deleted_ts": message["ts"],
            "previous_message": message,
            "ts": f"{time.time():.6f}",
        }
        return self.event(event)

    def submit(self, view: dict[str, Any], values: dict[str, Any], *, user: str = "UALICE") -> Reply:
        """Submit the modal `view` (as stored by views.open) with `values`, as Slack's client does."""
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
            "api_app_id": APP_ID,
            "token": "legacy-verification-token",
            "trigger_id": self.emulator.new_trigger_id(),
            "view": _view_payload(view, values),
            "response_urls": [],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self.post(body, "application/x-www-form-urlencoded")

    def message_shortcut(
        self, callback_id: str, channel: str, message: dict[str, Any], *, user: str = "UALICE"
    ) -> Reply:
        payload = {
            "type": "message_action",
            "callback_id": callback_id,
            "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "name": user.lower()},
            "channel": {"id": channel, "name": "general"},
            "message": message,
            "message_ts": message["ts"],
            "trigger_id": self.emulator.new_trigger_id(),
            "response_url": self.emulator.response_url(f"sc{next(_counter)}"),
            "token": "legacy-verification-token",
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self.post(body, "application/x-www-form-urlencoded")
