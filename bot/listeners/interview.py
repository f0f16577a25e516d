"""The readiness interview in Slack: start it, answer with buttons, go back, restart, finish.

Each question is one message in the interview's thread, updated in place as answers arrive; the
recommendation is a new message in the same thread. Buttons carry the interview id and its step,
so presses keep working after a restart of the bot and stale presses are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from sqlmodel import Session

from bot.deps import Deps, deps_of
from bot.listeners import answers
from runner.core.db import session_scope
from runner.core.exceptions import InterviewError
from runner.interview import interviews
from runner.interview.interviews import InterviewState
from runner.interview.readiness import Answer
from runner.slack import payloads
from runner.slack.client import call, try_call

ANSWER_ACTION = re.compile(r"^interview_answer_(yes|no|not_sure)$")
# Slack's answers when the question message can no longer be edited: ask again in a new one.
GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}


def begin(
    deps: Deps,
    client: WebClient,
    *,
    channel_id: str,
    user_id: str,
    team_id: str,
    topic: str,
    source: str,
    thread_ts: str | None = None,
) -> str | None:
    """Start an interview and post its first question; return an error code Slack gave, if any.

    With `thread_ts` (a mention) the questions go into that thread; otherwise a root message is
    posted first and the thread hangs off it.
    """
    with session_scope(deps.engine) as session:
        state = interviews.start(
            session, channel_id=channel_id, user_id=user_id, team_id=team_id, topic=topic, source=source
        )
        interview_id, question = state.interview.id, payloads.question(state)
    assert interview_id is not None
    if thread_ts is None:
        intro = payloads.interview_started(user_id, state.interview.topic)
        posted, error = try_call(client, "chat_postMessage", channel=channel_id, **intro)
        if posted is None:
            return error
        thread_ts = posted["ts"]
    posted, error = try_call(client, "chat_postMessage", channel=channel_id, thread_ts=thread_ts, **question)
    with session_scope(deps.engine) as session:
        interviews.set_messages(
            session, interview_id, thread_ts=thread_ts, question_ts=posted["ts"] if posted else None
        )
    return error


def show(deps: Deps, client: WebClient, state: InterviewState, pressed_ts: str | None = None) -> None:
    """Bring the thread up to date with `state`: the next question, or the closing note and result.

    `pressed_ts` is the message whose button was pressed: the question message, even when the
    press arrived before its ts was stored.
    """
    interview = state.interview
    assert interview.id is not None
    question_ts = pressed_ts or interview.question_ts
    if state.finished:
        if question_ts:
            closing = payloads.interview_closed(state)
            call(client, "chat_update", channel=interview.channel_id, ts=question_ts, **closing)
        result = payloads.interview_result(state)
        call(
            client, "chat_postMessage", channel=interview.channel_id, thread_ts=interview.thread_ts, **result
        )
        return
    payload = payloads.question(state)
    updated: object = None
    error: str | None = "message_not_found"
    if question_ts:
        updated, error = try_call(
            client, "chat_update", channel=interview.channel_id, ts=question_ts, **payload
        )
    if updated is None and error in GONE:
        posted = call(
            client, "chat_postMessage", channel=interview.channel_id, thread_ts=interview.thread_ts, **payload
        )
        if posted is not None:
            with session_scope(deps.engine) as session:
                interviews.set_messages(session, interview.id, question_ts=posted["ts"])


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to the person who pressed, in the thread they pressed in (through the
    press's response URL when Slack refuses the ephemeral)."""
    message = body.get("message") or {}
    answers.tell(
        client,
        channel=body["channel"]["id"],
        user=body["user"]["id"],
        text=text,
        thread_ts=message.get("thread_ts") or message.get("ts"),
        response_url=body.get("response_url"),
    )


def _press(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    action = body["actions"][0]
    return json.loads(action.get("value") or "{}"), action["action_id"]


def _apply(
    context: BoltContext,
    body: dict[str, Any],
    client: WebClient,
    change: Callable[[Session], InterviewState],
) -> None:
    """One press: the change in one unit of work, then Slack brought up to date (or a refusal)."""
    deps = deps_of(context)
    try:
        with session_scope(deps.engine) as session:
            state = change(session)
    except InterviewError as refused:
        tell(client, body, str(refused))
        return
    show(deps, client, state, pressed_ts=(body.get("container") or {}).get("message_ts"))


def on_answer(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    value, action_id = _press(body)
    answer = Answer(ANSWER_ACTION.match(action_id).group(1))  # type: ignore[union-attr]
    _apply(
        context,
        body,
        client,
        lambda session: interviews.answer(
            session,
            interview_id=int(value["i"]),
            user_id=body["user"]["id"],
            step=int(value["s"]),
            question_id=str(value["q"]),
            value=answer,
        ),
    )


def on_back(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    value, _ = _press(body)
    _apply(
        context,
        body,
        client,
        lambda session: interviews.back(
            session, interview_id=int(value["i"]), user_id=body["user"]["id"], step=int(value["s"])
        ),
    )


def on_restart(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
    value, _ = _press(body)
    _apply(
        context,
        body,
        client,
        lambda session: interviews.restart(
            session, interview_id=int(value["i"]), user_id=body["user"]["id"], step=int(value["s"])
        ),
    )
