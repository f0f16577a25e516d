"""Requests in the shapes real workspaces send (tests/slack_payloads/), through signed HTTP to the bot.

Enterprise Grid and Slack Connect envelopes, replies broadcast to the channel, files, bot and app
messages, the edits Slack makes itself (link unfurls, broadcasts) and real ones, deletions, mentions
with and without a person behind them, buttons in ephemeral messages, url_verification, ssl_check.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import EventStatus, Example, ProcessedEvent, Vote
from runner.data import examples, projects
from tests.test_datasets_slack import CHANNEL, PROJECT_FORM, open_modal
from tests.training_support import wait_until

PAYLOADS = Path(__file__).parent / "slack_payloads"
_events = itertools.count(1)
PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def fill(value: Any, values: dict[str, Any]) -> Any:
    """The fixture with its ``{{NAME}}`` placeholders filled in (a whole-string placeholder may
    become any JSON value)."""
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    return value


def payload(name: str, **values: Any) -> dict[str, Any]:
    values.setdefault("EVENT_ID", f"EvShape{next(_events):06d}")
    values.setdefault("CHANNEL", CHANNEL)
    return fill(json.loads((PAYLOADS / f"{name}.json").read_text()), values)


def send(slack, body: dict[str, Any]):
    return slack.post(json.dumps(body), "application/json")


def event_status(engine, event_id: str) -> EventStatus | None:
    with session_scope(engine) as session:
        row = session.get(ProcessedEvent, event_id)
        return row.status if row else None


def wait_settled(emulator, engine, event_id: str) -> EventStatus:
    return wait_until(
        lambda: (s := event_status(engine, event_id)) not in (None, EventStatus.PENDING) and s,
        what=f"event {event_id} to settle",
    )


@pytest.fixture
def project(slack, emulator, engine) -> dict[str, Any]:
    """A classification project whose reviewers are an Enterprise Grid user (W…) and a local one."""
    view = open_modal(slack, emulator)
    reply = slack.submit(view, {**PROJECT_FORM, "reviewers": ["W0REVIEW01", "UALICE"]})
    assert reply.status == 200

    def posted() -> str | None:
        with session_scope(engine) as session:
            found = [p for p in projects.list_projects(session) if p.name == "ticket-router"]
            return found[0].root_ts if found else None

    ts = wait_until(posted, what="the root message, posted and stored")
    return next(m for m in emulator.messages(CHANNEL) if m["ts"] == ts)


def thread_reply(emulator, root, text: str, user: str = "W0CONTRIB1") -> dict[str, Any]:
    return emulator.post_user_message(CHANNEL, text, user, thread_ts=root["ts"])


def example_texts(engine) -> dict[str, str]:
    with session_scope(engine) as session:
        rows = session.exec(select(Example).where(Example.deleted_at == None)).all()  # noqa: E711
        return {e.message_ts: e.input_text for e in rows}


def test_enterprise_grid_and_shared_channel_replies_and_votes_count(slack, emulator, engine, project):
    message = thread_reply(emulator, project, "my card was charged twice")
    body = payload(
        "grid_thread_reply",
        TEXT=message["text"],
        USER="W0CONTRIB1",
        TS=message["ts"],
        THREAD_TS=project["ts"],
    )
    assert send(slack, body).status == 200
    wait_until(lambda: message["ts"] in example_texts(engine), what="the reply as an example")
    for reviewer in ("W0REVIEW01", "UALICE"):
        vote = payload("grid_reaction_added", USER=reviewer, REACTION="one", TS=message["ts"])
        assert send(slack, vote).status == 200
        assert wait_settled(emulator, engine, vote["event_id"]) is EventStatus.DONE
    with session_scope(engine) as session:
        votes = {(v.reviewer_id, v.value) for v in session.exec(select(Vote)).all()}
    assert votes == {("W0REVIEW01", "billing"), ("UALICE", "billing")}


@pytest.mark.parametrize("shape", ["thread_broadcast", "file_share"])
def test_a_broadcast_reply_and_a_reply_with_a_file_are_examples(slack, emulator, engine, project, shape):
    message = thread_reply(emulator, project, "the export crashes, screenshot attached")
    body = payload(shape, TEXT=message["text"], USER="UDAVE", TS=message["ts"], THREAD_TS=project["ts"])
    assert send(slack, body).status == 200
    wait_until(lambda: message["ts"] in example_texts(engine), what="the example")
    assert example_texts(engine)[message["ts"]] == "the export crashes, screenshot attached"


@pytest.mark.parametrize("shape", ["bot_message", "app_bot_user_message"])
def test_bot_and_integration_messages_never_become_examples(slack, emulator, engine, project, shape):
    message = thread_reply(emulator, project, "Incident 42 resolved")
    body = payload(shape, TEXT=message["text"], USER="UDAVE", TS=message["ts"], THREAD_TS=project["ts"])
    assert send(slack, body).status == 200
    assert wait_settled(emulator, engine, body["event_id"]) is EventStatus.DONE
    assert message["ts"] not in example_texts(engine)


def test_a_mention_of_the_bot_in_a_project_thread_is_a_question_not_an_example(
    slack, emulator, engine, project
):
    message = thread_reply(emulator, project, "<@UBOT> help", user="UDAVE")
    as_message = {
        "type": "message",
        "channel": CHANNEL,
        "user": "UDAVE",
        "text": message["text"],
        "ts": message["ts"],
        "thread_ts": project["ts"],
        "channel_type": "channel",
    }
    mention = payload("app_mention_in_thread", USER="UDAVE", TS=message["ts"], THREAD_TS=project["ts"])
    assert slack.event(as_message).status == 200
    assert send(slack, mention).status == 200
    help_reply = emulator.wait_for(
        lambda: next(
            (m for m in emulator.thread(CHANNEL, project["ts"]) if m["text"].startswith("ftbot commands")),
            None,
        ),
        what="the help in the thread",
    )
    assert help_reply["thread_ts"] == project["ts"]
    assert wait_settled(emulator, engine, mention["event_id"]) is EventStatus.DONE
    assert message["ts"] not in example_texts(engine)


def test_a_mention_without_a_user_is_handled_not_replayed(slack, emulator, engine):
    mention = payload("app_mention_from_integration", TS="1700000510.000100", CHANNEL="CGENERAL")
    assert send(slack, mention).status == 200
    assert wait_settled(emulator, engine, mention["event_id"]) is EventStatus.DONE
    assert emulator.calls_to("chat.postMessage") == []  # no interview for nobody


def test_an_unfurl_or_a_broadcast_changes_nothing_and_an_edit_without_message_ts_applies(
    slack, emulator, engine, project
):
    message = thread_reply(
        emulator, project, "see https://status.example.com/incidents/42 the app is down", "UDAVE"
    )
    reply = {
        "type": "message",
        "channel": CHANNEL,
        "user": "UDAVE",
        "text": message["text"],
        "ts": message["ts"],
        "thread_ts": project["ts"],
    }
    assert slack.event(reply).status == 200
    wait_until(lambda: message["ts"] in example_texts(engine), what="the example")
    for reviewer in ("W0REVIEW01", "UALICE"):
        slack.react(CHANNEL, message["ts"], "two", reviewer)
    with session_scope(engine) as session:
        example_id = examples.find_example(session, 1, CHANNEL, message["ts"]).id

    def votes() -> list[tuple[str, bool]]:
        with session_scope(engine) as session:
            return sorted((v.reviewer_id, v.stale) for v in session.exec(select(Vote)).all())

    wait_until(lambda: len(votes()) == 2, what="two votes")
    values = {"TEXT": message["text"], "USER": "UDAVE", "TS": message["ts"], "THREAD_TS": project["ts"]}
    for shape in ("message_changed_unfurl", "message_changed_after_broadcast"):
        body = payload(shape, **values)
        assert send(slack, body).status == 200
        assert wait_settled(emulator, engine, body["event_id"]) is EventStatus.DONE
    assert votes() == [("UALICE", False), ("W0REVIEW01", False)], "nothing was edited"

    edit = payload(
        "message_changed_edit_without_ts",
        **{**values, "TEXT": "the app is down since the last update", "PREVIOUS_TEXT": message["text"]},
    )
    assert send(slack, edit).status == 200
    wait_until(lambda: all(stale for _, stale in votes()), what="the edit to make the votes stale")
    with session_scope(engine) as session:
        assert session.get(Example, example_id).input_text == "the app is down since the last update"


def test_a_deletion_removes_the_example(slack, emulator, engine, project):
    message = thread_reply(emulator, project, "my parcel never arrived", "UDAVE")
    slack.event(
        {"type": "message", "channel": CHANNEL, "user": "UDAVE", "text": message["text"], "ts": message["ts"],
         "thread_ts": project["ts"]}
    )  # fmt: skip
    wait_until(lambda: message["ts"] in example_texts(engine), what="the example")
    body = payload(
        "message_deleted", TEXT=message["text"], USER="UDAVE", TS=message["ts"], THREAD_TS=project["ts"]
    )
    assert send(slack, body).status == 200
    wait_until(lambda: message["ts"] not in example_texts(engine), what="the example to leave")


def test_a_button_in_an_ephemeral_message_works_without_the_message_in_the_payload(
    slack, emulator, engine, project
):
    """Slack sends no `message` for a press in an ephemeral message: only its container."""
    message = thread_reply(emulator, project, "refund my order please", "UDAVE")
    slack.event(
        {"type": "message", "channel": CHANNEL, "user": "UDAVE", "text": message["text"], "ts": message["ts"],
         "thread_ts": project["ts"]}
    )  # fmt: skip
    wait_until(lambda: message["ts"] in example_texts(engine), what="the example")
    slack.react(CHANNEL, message["ts"], "one", "W0REVIEW01")
    slack.react(CHANNEL, message["ts"], "two", "UALICE")
    with session_scope(engine) as session:
        example_id = examples.find_example(session, 1, CHANNEL, message["ts"]).id
    emulator.wait_for(
        lambda: any(c.args.get("name") == "warning" for c in emulator.calls_to("reactions.add")),
        what="the conflict",
    )
    action = {
        "type": "button",
        "action_id": "adjudicate_1",
        "block_id": f"conflict:ticket-router:{example_id}",
        "text": {"type": "plain_text", "text": "billing :one:", "emoji": True},
        "value": json.dumps({"p": "ticket-router", "e": example_id, "l": "billing", "pg": 0}),
        "action_ts": "1700000600.000100",
    }
    body = payload(
        "block_actions_ephemeral",
        USER="UALICE",
        TS="1700000590.000100",
        TRIGGER_ID=emulator.new_trigger_id(),
        RESPONSE_URL=emulator.response_url("ephemeral-list"),
        ACTIONS=[action],
    )
    assert "message" not in body
    assert (
        slack.post(
            urllib.parse.urlencode({"payload": json.dumps(body)}), "application/x-www-form-urlencoded"
        ).status
        == 200
    )
    replaced = emulator.wait_for(lambda: emulator.responses("ephemeral-list"), what="the list, replaced")[-1]
    assert replaced["replace_original"] is True and "No open conflicts" in replaced["text"] + json.dumps(
        replaced["blocks"]
    )
    with session_scope(engine) as session:
        assert session.get(Example, example_id).final_label == "billing"


def test_url_verification_and_ssl_check(slack):
    verification = payload("url_verification")
    reply = send(slack, verification)
    assert reply.status == 200 and verification["challenge"] in reply.body
    check = slack.post("ssl_check=1&token=legacy-verification-token", "application/x-www-form-urlencoded")
    assert check.status == 200


def test_reviewers_from_grid_are_reviewers(engine, project):
    with session_scope(engine) as session:
        assert projects.get_project(session, "ticket-router").reviewers == ["UALICE", "W0REVIEW01"]
