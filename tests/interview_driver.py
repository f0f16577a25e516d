"""Drive a readiness interview in Slack the way a person does: read the thread, press a button."""

from __future__ import annotations

from typing import Any

from tests.slack_client import SlackSide, buttons

ANSWER_LABEL = {"yes": "Yes", "no": "No", "not_sure": "Not sure"}


def question_message(emu: Any, channel: str, thread_ts: str) -> dict[str, Any] | None:
    """The thread's message that currently shows answer buttons, if any."""
    for message in emu.thread(channel, thread_ts):
        if "Yes" in buttons(message):
            return message
    return None


def result_message(emu: Any, channel: str, thread_ts: str) -> dict[str, Any] | None:
    for message in emu.thread(channel, thread_ts):
        if str(message.get("text", "")).startswith("Recommendation: "):
            return message
    return None


def step_of(message: dict[str, Any]) -> str:
    """The actions block id, which changes with every accepted press."""
    return next(b["block_id"] for b in message["blocks"] if b["type"] == "actions")


def current_question_id(message: dict[str, Any]) -> str:
    import json

    return json.loads(buttons(message)["Yes"][1]["value"])["q"]


def press_and_wait(
    slack: SlackSide, emu: Any, channel: str, thread_ts: str, label: str, user: str = "UALICE"
) -> None:
    """Press `label` on the current question and wait until the thread shows its effect."""
    before = question_message(emu, channel, thread_ts)
    assert before is not None, "no question with buttons in the thread"
    reply = slack.press(before, label, user=user, channel=channel)
    assert reply.status == 200, reply
    emu.wait_for(
        lambda: (q := question_message(emu, channel, thread_ts)) is None or step_of(q) != step_of(before),
        what=f"the thread to move on after pressing {label}",
    )


def start_thread(
    slack: SlackSide,
    emu: Any,
    text: str = "start ticket router",
    user: str = "UALICE",
    channel: str = "CGENERAL",
) -> str:
    """Run `/finetune <text>` and return the interview thread's ts once its first question is up."""
    reply = slack.slash(text, user=user, channel=channel)
    assert reply.status == 200, reply
    root = emu.wait_for(
        lambda: next(
            (
                m
                for m in emu.messages(channel)
                if "readiness check" in m.get("text", "")
                and question_message(emu, channel, m["ts"]) is not None
            ),
            None,
        ),
        what="the interview thread with its first question",
    )
    return root["ts"]


def answer_all(
    slack: SlackSide, emu: Any, channel: str, thread_ts: str, answers: dict[str, str], user: str = "UALICE"
) -> list[str]:
    """Answer questions from `answers` (question id → yes/no/not_sure) until none is asked."""
    asked = []
    while (question := question_message(emu, channel, thread_ts)) is not None:
        qid = current_question_id(question)
        asked.append(qid)
        press_and_wait(slack, emu, channel, thread_ts, ANSWER_LABEL[answers[qid]], user=user)
    emu.wait_for(lambda: result_message(emu, channel, thread_ts), what="the recommendation message")
    return asked
