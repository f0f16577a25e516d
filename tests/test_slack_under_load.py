"""ftbot against a Web API that answers the way Slack does under load: slow calls, rate limits on every
method, refusals that outlast the retries. Signed HTTP to the real Bolt app; the emulator holds,
rate-limits and fails calls on demand.

* Acks never wait on the Web API: with every work thread inside a Slack call, commands, buttons,
  modals and events are still answered.
* A full work pool starts nothing new: people are told to try again, events wait for their replay.
* Rate limits beyond the retry budget give up: answers go through the response URL, an event that
  needed Slack's answer fails and is replayed once Slack answers again; a reaction that is no label
  costs no Web API call at all.
* :warning: marks and the tally that Slack refused are re-applied by the repair pass once it answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import select

from bot import inbox
from bot.tally import Repairer
from bot.work import BUSY
from runner.core.db import session_scope
from runner.core.models import EventStatus, Example, ProcessedEvent, Vote
from runner.data import examples, projects
from runner.slack import payloads
from tests.conftest import RunningBot, start_bot
from tests.slack_client import SlackPeople
from tests.test_datasets_slack import CHANNEL, EMOJI, blocks_text, create_project, root_message
from tests.training_support import wait_until


@pytest.fixture
def small_pool(settings, engine, emulator) -> Iterator[RunningBot]:
    """The bot with one work thread and room for two pieces of work."""
    running = start_bot(
        settings.model_copy(update={"ftbot_work_threads": 1, "ftbot_work_queue": 2}), engine, emulator
    )
    yield running
    running.stop()


@pytest.fixture
def two_threads(settings, engine, emulator) -> Iterator[RunningBot]:
    running = start_bot(
        settings.model_copy(update={"ftbot_work_threads": 2, "ftbot_work_queue": 100}), engine, emulator
    )
    yield running
    running.stop()


def event_row(engine, event_id: str) -> ProcessedEvent | None:
    with session_scope(engine) as session:
        return session.get(ProcessedEvent, event_id)


def response_text(emulator, key: str) -> str:
    return " ".join(r.get("text", "") + json.dumps(r.get("blocks", [])) for r in emulator.responses(key))


def test_acks_never_wait_for_slack_calls_in_progress(two_threads, emulator, engine):
    slack: SlackPeople = two_threads.slack
    releases = [emulator.hold_next("chat.postEphemeral") for _ in range(6)]
    try:
        # Two commands whose answers hang in Slack: both work threads are inside a Web API call.
        for _ in range(2):
            assert slack.slash("history").status == 200
        emulator.wait_for(lambda: emulator.held.count("chat.postEphemeral") == 2, what="both threads held")

        # Everything else is still answered at once, from the request thread.
        helped = slack.slash("help")
        assert helped.status == 200 and "history" in helped.json()["text"]
        assert slack.slash("status nothing-here").status == 200  # queued behind the held calls
        message = emulator.post_user_message("CGENERAL", "lunch?", "UALICE")
        assert slack.react("CGENERAL", message["ts"], "tada", "UBOB", event_id="EvLoad0001").status == 200
        row = event_row(engine, "EvLoad0001")
        assert row is not None and row.status is EventStatus.PENDING  # recorded before the ack
        question = {
            "ts": "1700000000.000100",
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "interview:1:0",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Yes"},
                            "action_id": "interview_answer_yes",
                            "value": json.dumps({"i": 999, "s": 0, "q": "facts_change", "a": "yes"}),
                        }
                    ],
                }
            ],
        }
        assert slack.press(question, "Yes").status == 200
        assert emulator.held.count("chat.postEphemeral") == 2, "the new work waits for a thread"
    finally:
        for release in releases:
            release.set()
    # Released, every piece of work finishes: three answers and the event settled.
    emulator.wait_for(lambda: len(emulator.ephemerals()) >= 4, what="the answers once Slack answers")
    wait_until(lambda: event_row(engine, "EvLoad0001").status is EventStatus.DONE, what="event done")


def test_a_full_work_pool_tells_people_to_try_again_and_leaves_events_for_replay(
    small_pool, emulator, engine, settings
):
    slack: SlackPeople = small_pool.slack
    release = emulator.hold_next("chat.postEphemeral")
    try:
        assert slack.slash("history").status == 200  # running: held inside Slack
        emulator.wait_for(lambda: "chat.postEphemeral" in emulator.held, what="the held call")
        assert slack.slash("history").status == 200  # waiting: the pool holds two, it is full

        command = slack.slash("status ticket-router")
        assert command.status == 200 and command.json()["text"] == BUSY

        view = payloads.project_modal("CDATA", None)
        submitted = slack.submit(view, {"name": "busy-project", "labels": "a\nb", "reviewers": ["UBOB"]})
        assert submitted.json() == {"response_action": "errors", "errors": {"name": BUSY}}

        question = {
            "ts": "1700000000.000100",
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "b",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Restart"},
                            "action_id": "interview_restart",
                            "value": json.dumps({"i": 999, "s": 0}),
                        }
                    ],
                }
            ],
        }
        assert slack.press(question, "Restart", response_key="busy-press").status == 200
        emulator.wait_for(lambda: BUSY in response_text(emulator, "busy-press"), what="the busy notice")

        message = emulator.post_user_message("CGENERAL", "lunch?", "UALICE")
        assert slack.react("CGENERAL", message["ts"], "tada", "UBOB", event_id="EvBusy0001").status == 200
        assert small_pool.app.deps.pool.saturated
    finally:
        release.set()
    emulator.wait_for(lambda: len(emulator.ephemerals()) == 2, what="the two accepted commands answered")
    assert event_row(engine, "EvBusy0001").status is EventStatus.PENDING, "never started: left for replay"
    assert not (projects_named(engine, "busy-project"))

    due_now = settings.model_copy(update={"ftbot_event_replay_after": 0.0})
    assert inbox.replay_due(small_pool.app, engine, due_now) == 1
    wait_until(lambda: event_row(engine, "EvBusy0001").status is EventStatus.DONE, what="the replay")


def test_events_a_full_pool_deferred_are_replayed_once_it_has_room_without_spending_an_attempt(
    small_pool, emulator, engine, settings
):
    slack: SlackPeople = small_pool.slack
    # The crash timeout is an hour away: only the pool's own deferral can bring these events back.
    sweeper = inbox.Sweeper(
        small_pool.app, engine, settings.model_copy(update={"ftbot_event_replay_after": 3600.0})
    )
    sweeper.start()
    releases = [emulator.hold_next("chat.postEphemeral") for _ in range(2)]
    try:
        assert slack.slash("history").status == 200
        emulator.wait_for(lambda: "chat.postEphemeral" in emulator.held, what="the held call")
        assert slack.slash("history").status == 200  # the pool is full
        refused = []
        for n in range(3):
            message = emulator.post_user_message("CGENERAL", f"lunch {n}?", "UALICE")
            event_id = f"EvDefer000{n}"
            assert slack.react("CGENERAL", message["ts"], "tada", "UBOB", event_id=event_id).status == 200
            refused.append(event_id)
        rows = [event_row(engine, event_id) for event_id in refused]
        assert [(r.status, r.attempts) for r in rows] == [(EventStatus.PENDING, 0)] * 3, "not yet delivered"
        assert not sweeper.pool.room.is_set()
    finally:
        for release in releases:
            release.set()
    try:
        for event_id in refused:
            wait_until(
                lambda e=event_id: event_row(engine, e).status is EventStatus.DONE,
                what=f"{event_id} replayed",
            )
        assert [event_row(engine, e).attempts for e in refused] == [1, 1, 1], "one delivery each"
    finally:
        sweeper.stop()
        sweeper.join(timeout=10)
    assert not sweeper.is_alive()


def projects_named(engine, name: str) -> list[Any]:
    with session_scope(engine) as session:
        return [p for p in projects.list_projects(session) if p.name == name]


def test_when_slack_rate_limits_everything_answers_take_the_response_url_and_votes_wait_for_replay(
    slack, emulator, engine, settings, bot
):
    root = create_project(slack, emulator)
    # A reply whose message event never reached the bot: a vote on it needs Slack to read the thread.
    reply = emulator.post_user_message(CHANNEL, "my card was charged twice", "UDAVE", thread_ts=root["ts"])
    chatter = emulator.post_user_message(CHANNEL, "who wants lunch?", "UDAVE")
    emulator.clear()

    emulator.rate_limit_all(60)  # Retry-After: 60, beyond the 2 s budget of the tests' settings
    try:
        assert slack.slash("status ticket-router", channel=CHANNEL, response_key="status").status == 200
        emulator.wait_for(lambda: "Examples per label" in response_text(emulator, "status"), what="status")

        assert slack.react(CHANNEL, chatter["ts"], "+1", "UALICE", event_id="EvThumbs01").status == 200
        assert slack.react(CHANNEL, reply["ts"], "one", "UALICE", event_id="EvVote0001").status == 200
        wait_until(
            lambda: (row := event_row(engine, "EvVote0001")) is not None and row.status is EventStatus.FAILED,
            what="the vote's event to fail for now",
        )
        assert "SlackUnavailable" in event_row(engine, "EvVote0001").error
        wait_until(lambda: event_row(engine, "EvThumbs01").status is EventStatus.DONE, what="👍 done")
        reads = emulator.calls_to("conversations.replies")
        assert len(reads) == 1, "only the vote read the thread; 👍 on chatter costs no call"
    finally:
        emulator.rate_limit_all(None)

    due_now = settings.model_copy(update={"ftbot_event_replay_after": 0.0})
    assert inbox.replay_due(bot.app, engine, due_now) == 1
    wait_until(lambda: event_row(engine, "EvVote0001").status is EventStatus.DONE, what="the replay")
    with session_scope(engine) as session:
        assert [(v.reviewer_id, v.value) for v in session.exec(select(Vote)).all()] == [("UALICE", "billing")]


def test_marks_and_tally_that_slack_refused_are_repaired_once_it_answers_again(slack, emulator, engine, bot):
    root = create_project(slack, emulator)
    message = slack.reply(CHANNEL, root["ts"], "refund my order", "UDAVE")
    emulator.wait_for(lambda: "1 (1 awaiting" in blocks_text(root_message(emulator)), what="the example")

    # Slack refuses every mark and every tally update, beyond the retries.
    emulator.rate_limit_next("reactions.add", times=1000, retry_after=60)
    emulator.rate_limit_next("chat.update", times=1000, retry_after=60)
    slack.react(CHANNEL, message["ts"], EMOJI["billing"], "UALICE")
    slack.react(CHANNEL, message["ts"], EMOJI["technical"], "UBOB")  # a conflict

    def state() -> tuple[bool, bool, bool]:
        with session_scope(engine) as session:
            project = projects.get_project(session, "ticket-router")
            example = examples.find_example(session, project.id, CHANNEL, message["ts"])
            conflicted = example is not None and example.final_label is None
            return project.tally_dirty, bool(example and example.warning_marked), conflicted

    wait_until(lambda: len(emulator.calls_to("reactions.add")) >= 1 and state()[0], what="a refused refresh")
    wait_until(lambda: state() == (True, False, True), what="the claim given back")
    assert "*Conflicts*\\n0" in blocks_text(root_message(emulator)), "Slack still shows the old tally"

    emulator.clear()  # Slack answers again
    repairer = Repairer(engine, bot.app.deps.tally, interval=0.2)
    repairer.start()
    try:
        marked = emulator.wait_for(
            lambda: next(
                (
                    r
                    for m in emulator.messages(CHANNEL)
                    if m["ts"] == message["ts"]
                    for r in m.get("reactions", [])
                    if r["name"] == "warning" and "UBOT" in r["users"]
                ),
                None,
            ),
            what="the :warning: mark in Slack",
        )
        assert marked["count"] == 1
        emulator.wait_for(lambda: "*Conflicts*\\n1" in blocks_text(root_message(emulator)), what="the tally")
        wait_until(lambda: state() == (False, True, True), what="the database to agree")
    finally:
        repairer.stop()
    with session_scope(engine) as session:
        assert session.exec(select(Example)).one().warning_marked


def test_the_first_request_of_a_fresh_process_does_not_wait_for_auth_test(settings, engine, emulator):
    """Bolt needs the bot's own ids (auth.test) to answer; ftbot asks at start, not on a request."""
    running = start_bot(settings, engine, emulator)
    try:
        assert [c.method for c in emulator.calls] == ["auth.test"]
        emulator.rate_limit_all(60)
        reply = running.slack.slash("help")
        assert reply.status == 200 and "history" in reply.json()["text"]
        assert [c.method for c in emulator.calls] == ["auth.test"], "no Web API call on the request"
    finally:
        emulator.rate_limit_all(None)
        running.stop()
