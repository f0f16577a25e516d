"""The readiness interview in Slack: start it, answer with buttons, go back, restart, finish.

Each question is one message in the interview's thread, updated in place as answers arrive; the
recommendation is a new message in the same thread. Buttons carry the interview id and its step,
so presses keep working after a restart of the bot and stale presses are refused.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from runner import interviews, readiness
from runner.db import session_scope
from runner.exceptions import InterviewError
from runner.interviews import InterviewState
from runner.readiness import Answer
from runner.render import render
from runner.slackapi import call, try_call

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)

ANSWER_ACTION = re.compile(r"^interview_answer_(yes|no|not_sure)$")
LABELS = {Answer.YES: "Yes", Answer.NO: "No", Answer.NOT_SURE: "Not sure"}
TOTAL = len(readiness.QUESTIONS)
SHORT = {q.id: q.id.replace("_", " ") for q in readiness.QUESTIONS}


def recap(answers: dict[str, Answer]) -> list[str]:
    """``["facts change: No", …]`` for the context line under a question."""
    return [f"{SHORT[qid]}: {LABELS[value]}" for qid, value in answers.items()]


def question_payload(state: InterviewState) -> dict[str, Any]:
    assert state.question is not None and state.interview.id is not None
    return render(
        "interview_question.json.j2",
        interview_id=state.interview.id,
        step=state.interview.step,
        number=state.number,
        total=TOTAL,
        question=state.question,
        can_back=bool(state.answers),
        recap=recap(state.answers),
    )


def result_payload(state: InterviewState) -> dict[str, Any]:
    assert state.recommendation is not None
    result = state.recommendation.to_dict()
    drivers = [f"{SHORT[qid]}: {LABELS[Answer(value)]}" for qid, value in state.recommendation.drivers]
    return render(
        "interview_result.json.j2",
        interview_id=state.interview.id,
        user_id=state.interview.user_id,
        topic=state.interview.topic,
        result=result,
        secondary_reason="",
        drivers=drivers,
        answered=len(state.answers),
    )


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
    assert state.interview.id is not None
    if thread_ts is None:
        intro = render("interview_started.json.j2", user_id=user_id, topic=state.interview.topic, total=TOTAL)
        posted, error = try_call(client, "chat_postMessage", channel=channel_id, **intro)
        if posted is None:
            return error
        thread_ts = posted["ts"]
    posted, error = try_call(
        client, "chat_postMessage", channel=channel_id, thread_ts=thread_ts, **question_payload(state)
    )
    with session_scope(deps.engine) as session:
        interviews.set_messages(
            session, state.interview.id, thread_ts=thread_ts, question_ts=posted["ts"] if posted else None
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
        closing = render(
            "interview_closed.json.j2", answered=len(state.answers), total=TOTAL, recap=recap(state.answers)
        )
        if question_ts:
            call(client, "chat_update", channel=interview.channel_id, ts=question_ts, **closing)
        call(
            client,
            "chat_postMessage",
            channel=interview.channel_id,
            thread_ts=interview.thread_ts,
            **result_payload(state),
        )
        return
    payload = question_payload(state)
    updated: object = None
    error: str | None = "message_not_found"
    if question_ts:
        updated, error = try_call(
            client, "chat_update", channel=interview.channel_id, ts=question_ts, **payload
        )
    if updated is None and error in {"message_not_found", "cant_update_message", "edit_window_closed"}:
        # The question message is gone (deleted, or too old to edit): ask again in a new one.
        posted = call(
            client, "chat_postMessage", channel=interview.channel_id, thread_ts=interview.thread_ts, **payload
        )
        if posted is not None:
            with session_scope(deps.engine) as session:
                interviews.set_messages(session, interview.id, question_ts=posted["ts"])


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to the person who pressed, in the thread they pressed in."""
    message = body.get("message") or {}
    call(
        client,
        "chat_postEphemeral",
        channel=body["channel"]["id"],
        user=body["user"]["id"],
        thread_ts=message.get("thread_ts") or message.get("ts"),
        **render("notice.json.j2", text=text),
    )


def _press(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    action = body["actions"][0]
    return json.loads(action.get("value") or "{}"), action["action_id"]


def register(app: App, deps: Deps) -> None:
    def apply(body: dict[str, Any], client: WebClient, change: Any) -> None:
        try:
            with session_scope(deps.engine) as session:
                state = change(session)
        except InterviewError as refused:
            tell(client, body, str(refused))
            return
        show(deps, client, state, pressed_ts=(body.get("container") or {}).get("message_ts"))

    @app.action(ANSWER_ACTION)
    def on_answer(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value, action_id = _press(body)
        answer = Answer(ANSWER_ACTION.match(action_id).group(1))  # type: ignore[union-attr]
        apply(
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

    @app.action("interview_back")
    def on_back(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value, _ = _press(body)
        apply(
            body,
            client,
            lambda session: interviews.back(
                session, interview_id=int(value["i"]), user_id=body["user"]["id"], step=int(value["s"])
            ),
        )

    @app.action("interview_restart")
    def on_restart(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        value, _ = _press(body)
        apply(
            body,
            client,
            lambda session: interviews.restart(
                session, interview_id=int(value["i"]), user_id=body["user"]["id"], step=int(value["s"])
            ),
        )
