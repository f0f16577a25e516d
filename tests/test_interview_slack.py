"""The readiness interview through Slack: signed HTTP in, Web API calls out (to the emulator)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import start_bot
from tests.interview_driver import (
    answer_all,
    current_question_id,
    press_and_wait,
    question_message,
    result_message,
    start_thread,
    step_of,
)
from tests.slack_client import buttons

SUPPORT_TRIAGE = {
    "facts_change": "not_sure",
    "multi_step": "no",
    "instructions_gap": "no",
    "narrow_task": "yes",
    "correct_examples": "yes",
    "reviewers_agree": "yes",
    "behaviour_not_knowledge": "yes",
    "heldout_set": "no",
    "known_metric": "yes",
    "tried_alternatives": "yes",
    "rollback_plan": "yes",
}


def test_whole_interview_by_pressing_the_posted_buttons(slack, emulator):
    thread = start_thread(slack, emulator, "start route support emails")
    asked = answer_all(slack, emulator, "CGENERAL", thread, SUPPORT_TRIAGE)

    # one question at a time, in order, until the rest could not change the outcome
    assert asked == list(SUPPORT_TRIAGE)[: len(asked)] and len(asked) == 10
    result = result_message(emulator, "CGENERAL", thread)
    assert "Stopped after 10" in json.dumps(result["blocks"])
    assert result["text"].startswith("Recommendation: Fine-tuning")
    assert "RAG" in result["text"]  # the guide's support-email case keeps retrieval as the secondary
    assert "Start collecting examples" in buttons(result)
    blockers = json.dumps(result["blocks"])
    assert "held-out" in blockers.lower() or "evaluation set" in blockers.lower()
    assert question_message(emulator, "CGENERAL", thread) is None  # the question message was closed


def test_each_question_says_why_it_matters_and_offers_three_answers(slack, emulator):
    thread = start_thread(slack, emulator)
    question = question_message(emulator, "CGENERAL", thread)
    labels = set(buttons(question))
    assert {"Yes", "No", "Not sure", "Restart"} <= labels
    assert "Back" not in labels  # nothing to go back to yet
    assert any(
        b["type"] == "context" and "why" in json.dumps(b).lower() or ":bulb:" in json.dumps(b)
        for b in question["blocks"]
    )


def test_back_changes_the_last_answer_and_restart_starts_over(slack, emulator):
    thread = start_thread(slack, emulator)
    press_and_wait(slack, emulator, "CGENERAL", thread, "No")
    press_and_wait(slack, emulator, "CGENERAL", thread, "No")
    assert current_question_id(question_message(emulator, "CGENERAL", thread)) == "instructions_gap"

    press_and_wait(slack, emulator, "CGENERAL", thread, "Back")
    assert current_question_id(question_message(emulator, "CGENERAL", thread)) == "multi_step"

    press_and_wait(slack, emulator, "CGENERAL", thread, "Restart")
    question = question_message(emulator, "CGENERAL", thread)
    assert current_question_id(question) == "facts_change"
    assert "Back" not in buttons(question)


def test_facts_that_change_stop_the_interview_early_with_rag(slack, emulator):
    thread = start_thread(slack, emulator, "start HR policy assistant")
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")  # facts change
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")  # and it is multi-step work
    result = emulator.wait_for(lambda: result_message(emulator, "CGENERAL", thread), what="result")
    assert result["text"].startswith("Recommendation: RAG (then Workflow design)")
    assert "Stopped after 2" in json.dumps(result["blocks"])
    assert "Start collecting examples" not in buttons(result)


def test_a_press_by_someone_else_is_refused_and_changes_nothing(slack, emulator):
    thread = start_thread(slack, emulator)
    question = question_message(emulator, "CGENERAL", thread)
    reply = slack.press(question, "Yes", user="UBOB")
    assert reply.status == 200
    note = emulator.wait_for(lambda: next(iter(emulator.ephemerals("CGENERAL")), None), what="ephemeral")
    assert note["user"] == "UBOB" and "UALICE" in note["text"]
    assert step_of(question_message(emulator, "CGENERAL", thread)) == step_of(question)


def test_a_double_press_counts_once(slack, emulator):
    thread = start_thread(slack, emulator)
    question = question_message(emulator, "CGENERAL", thread)
    first = slack.press(question, "No")
    second = slack.press(question, "No")  # the same button again before the message updated
    assert first.status == second.status == 200
    emulator.wait_for(lambda: emulator.ephemerals("CGENERAL"), what="the refusal of the second press")
    emulator.wait_for(
        lambda: current_question_id(question_message(emulator, "CGENERAL", thread)) == "multi_step",
        what="the second question",
    )
    # exactly one answer was taken: going back returns to the first question, not the second
    press_and_wait(slack, emulator, "CGENERAL", thread, "Back")
    assert current_question_id(question_message(emulator, "CGENERAL", thread)) == "facts_change"


def test_a_press_on_a_finished_interview_is_explained(slack, emulator):
    thread = start_thread(slack, emulator)
    first_question = question_message(emulator, "CGENERAL", thread)
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")  # facts change
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")  # multi-step → decided
    emulator.wait_for(lambda: result_message(emulator, "CGENERAL", thread), what="result")
    slack.press(first_question, "No")  # an old copy of the question, still on someone's screen
    note = emulator.wait_for(lambda: next(iter(emulator.ephemerals("CGENERAL")), None), what="ephemeral")
    assert "finished" in note["text"]


def test_the_interview_continues_after_the_bot_restarts(settings, engine, emulator):
    first = start_bot(settings, engine, emulator)
    thread = start_thread(first.slack, emulator)
    press_and_wait(first.slack, emulator, "CGENERAL", thread, "No")
    first.stop()

    second = start_bot(settings, engine, emulator)  # a new process: nothing in memory
    try:
        answers = {**SUPPORT_TRIAGE, "facts_change": "no"}
        answer_all(second.slack, emulator, "CGENERAL", thread, answers)
        result = result_message(emulator, "CGENERAL", thread)
        assert result["text"].startswith("Recommendation: Fine-tuning")
    finally:
        second.stop()


def test_a_mention_opens_the_interview_in_its_thread(slack, emulator):
    reply = slack.mention("should we fine-tune our ticket router?")
    assert reply.status == 200
    mention = emulator.messages("CGENERAL")[0]
    question = emulator.wait_for(
        lambda: question_message(emulator, "CGENERAL", mention["ts"]), what="question"
    )
    assert question["thread_ts"] == mention["ts"]


def test_history_lists_the_channels_interviews(slack, emulator):
    thread = start_thread(slack, emulator, "start invoice extraction")
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")
    press_and_wait(slack, emulator, "CGENERAL", thread, "Yes")
    emulator.wait_for(lambda: result_message(emulator, "CGENERAL", thread), what="result")

    assert slack.slash("history").status == 200
    listing = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals("CGENERAL") if "interviews" in e["text"].lower()), None),
        what="history",
    )
    text = json.dumps(listing["blocks"])
    assert "invoice extraction" in text and "RAG" in text


def test_help_lists_every_subcommand_and_unknown_ones_get_it_too(slack, emulator):
    from bot.listeners.commands import SUBCOMMANDS

    reply = slack.slash("frobnicate")
    assert reply.status == 200
    body = reply.json()
    assert "frobnicate" in json.dumps(body["blocks"])
    for name in SUBCOMMANDS:
        assert name in body["text"]


def test_the_word_payload_in_a_command_still_reaches_the_listener(slack, emulator):
    reply = slack.slash("help payload")
    assert reply.status == 200
    assert "history" in reply.json()["text"]  # the help is the ack itself: no Web API call needed


def test_bad_signatures_and_old_timestamps_are_refused_with_401(slack, emulator):
    assert slack.slash("start", signed=False).status == 401
    assert slack.slash("start", secret="wrong-secret").status == 401
    assert slack.slash("start", timestamp=int(time.time()) - 6 * 60).status == 401
    assert emulator.calls_to("chat.postMessage") == []


def test_a_redelivered_event_is_handled_once(slack, emulator):
    message = emulator.post_user_message("CGENERAL", "<@UBOT> should we tune?", "UALICE")
    event = {
        "type": "app_mention",
        "user": "UALICE",
        "text": message["text"],
        "ts": message["ts"],
        "channel": "CGENERAL",
    }
    assert slack.event(event, event_id="Ev0DUPLICATE").status == 200
    emulator.wait_for(lambda: question_message(emulator, "CGENERAL", message["ts"]), what="question")
    assert slack.event(event, event_id="Ev0DUPLICATE", retry_num=1).status == 200
    assert slack.event(event, event_id="Ev0DUPLICATE", retry_num=2).status == 200
    # a different event afterwards is handled, and by then any duplicate work would have shown up
    slack.mention("another one")
    emulator.wait_for(lambda: len(emulator.calls_to("chat.postMessage")) >= 2, what="second interview")
    firsts = [c for c in emulator.calls_to("chat.postMessage") if c.args.get("thread_ts") == message["ts"]]
    assert len(firsts) == 1


def test_every_subscribed_event_has_a_listener(slack, emulator):
    import yaml

    manifest = yaml.safe_load(Path("deploy/slack-manifest.yml").read_text())
    for subscription in manifest["settings"]["event_subscriptions"]["bot_events"]:
        message = emulator.post_user_message("CGENERAL", "<@UBOT> help", "UALICE")
        event = {
            "type": subscription.split(".")[0],  # message.channels arrives as type "message"
            "user": "UALICE",
            "text": message["text"],
            "ts": message["ts"],
            "channel": "CGENERAL",
            "item": {"type": "message", "channel": "CGENERAL", "ts": message["ts"]},
            "reaction": "one",
            "tab": "home",
        }
        assert slack.event(event).status == 200, subscription


def test_a_channel_the_bot_is_not_in_gets_an_ephemeral_hint(slack, emulator):
    emulator.fail_next("chat.postMessage", "not_in_channel")
    assert slack.slash("start").status == 200
    response = emulator.wait_for(lambda: next(iter(emulator.responses()), None), what="response_url post")
    assert response["response_type"] == "ephemeral" and "/invite" in response["text"]


def test_rate_limits_are_retried_and_a_lost_question_message_is_reposted(slack, emulator):
    thread = start_thread(slack, emulator)
    emulator.rate_limit_next("chat.update", times=1, retry_after=0)
    press_and_wait(slack, emulator, "CGENERAL", thread, "No")
    assert current_question_id(question_message(emulator, "CGENERAL", thread)) == "multi_step"

    emulator.fail_next("chat.update", "message_not_found")
    question = question_message(emulator, "CGENERAL", thread)
    slack.press(question, "No")
    emulator.wait_for(
        lambda: any(
            current_question_id(m) == "instructions_gap"
            for m in emulator.thread("CGENERAL", thread)
            if "Yes" in buttons(m)
        ),
        what="the next question posted anew",
    )
