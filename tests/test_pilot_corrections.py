"""Corrections in words, through signed requests: a reviewer reacts ❌ on a pilot suggestion and replies
in its thread with the right output. The reply counts while the ❌ stands and only then — a reply alone,
or a ❌ alone, is not a correction — and becomes the corrected label (or, for drafts, the corrected
output) of the pilot example, which then follows the dataset's own consensus rules. Replies that do not
fit the task are explained in the thread and count for nothing; duplicates count once; taking the ❌
back (or deleting the reply) retracts the correction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import col, select

from runner.core.db import session_scope
from runner.core.models import Correction, Example, ModelVersion, Prediction, ReviewOutcome, Snapshot
from runner.core.policy import Person
from runner.data import gates, projects
from runner.jobs import predict
from runner.registry import pilot, versions
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import PROJECT, make_project, react, right_label, say, settled, suggestion
from tests.registry_support import move
from tests.training_support import wait_until

_reply_ids = iter(range(1, 10**9))


def wrong_on_crashes(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    """v1 calls every crash an account problem; it routes everything else right."""
    if model != f"{PROJECT}-v1":
        return None
    truth = right_label(messages[-1]["content"])
    return ("account" if truth == "technical" else truth), 0.9


def reply(slack, engine, channel: str, thread_ts: str, text: str, user: str, *, event_id: str | None = None):
    """`user` replies in a thread (stored in the emulator, the event delivered and handled)."""
    message = slack.emulator.post_user_message(channel, text, user, thread_ts=thread_ts)
    return message, deliver_reply(slack, engine, channel, message, event_id=event_id)


def deliver_reply(
    slack, engine, channel: str, message: dict[str, Any], *, event_id: str | None = None
) -> str:
    event_id = event_id or f"EvT{next(_reply_ids):09d}"
    event = {
        "type": "message",
        "channel": channel,
        "user": message["user"],
        "text": message["text"],
        "ts": message["ts"],
        "thread_ts": message["thread_ts"],
        "channel_type": "channel",
    }
    assert slack.event(event, event_id=event_id).status == 200
    settled(engine, event_id)
    return event_id


def told(emulator, user: str, thread_ts: str) -> list[str]:
    """What ftbot told `user` alone in the thread of `thread_ts`."""
    return [
        e["text"] for e in emulator.ephemerals("CPILOT") if e["user"] == user and e["thread_ts"] == thread_ts
    ]


def state_of(engine, message_ts: str) -> tuple[ReviewOutcome | None, dict[str, str], str | None]:
    """The suggestion's outcome, its example's current votes, and the label the dataset settled on."""
    with session_scope(engine) as session:
        prediction = session.exec(
            select(Prediction).where(Prediction.message_ts == message_ts, col(Prediction.shadow).is_(False))
        ).one()
        project = projects.get_project(session, PROJECT)
        state = next(
            (s for s in gates.example_states(session, project) if s.example.id == prediction.example_id), None
        )
        return prediction.outcome, (state.votes if state else {}), (state.label if state else None)


@pytest.fixture
def piloting(slack, emulator, engine, settings):
    make_project(engine, settings, count=1)
    move(engine, settings, "promote", 1)
    emulator.add_channel("CPILOT", "support")
    with FakeInferenceServer(wrong_on_crashes) as server:
        settings.ftbot_inference_url = server.url
        assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
        emulator.wait_for(
            lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT"))
        )
        yield server


def ask(slack, emulator, engine, settings, texts: list[str]) -> list[tuple[dict, dict]]:
    """Pilot messages and their suggestions, answered by the predict job's own function."""
    messages = [say(slack, "CPILOT", text) for text in texts]
    for message in messages:
        settled(engine, f"Ev{message['ts'].replace('.', '')}")
    predict.answer_queued(settings, engine)
    return [(m, emulator.wait_for(lambda m=m: suggestion(emulator, "CPILOT", m["ts"]))) for m in messages]


def test_a_cross_and_a_reply_correct_a_label(slack, emulator, engine, settings, piloting):
    (crash, crash_tip), (crash2, crash2_tip), (crash3, crash3_tip), (crash4, crash4_tip) = ask(
        slack,
        emulator,
        engine,
        settings,
        ["the app crashes on start", "crash after the update", "crash when saving", "crash at login"],
    )
    assert crash_tip["text"].startswith("Suggestion from ticket-router v1: account")

    # ❌ alone: not a review yet; ftbot says what to reply, in the thread, to the reviewer alone
    react(slack, engine, "CPILOT", crash_tip["ts"], "x", "UBOB")
    assert state_of(engine, crash["ts"]) == (None, {}, None)
    # (the reaction's event is settled with its vote, before ftbot speaks: wait for the words)
    (hint,) = emulator.wait_for(lambda: told(emulator, "UBOB", crash["ts"]), what="the hint")
    assert "reply in this thread with the right label" in hint and ":two: technical" in hint
    # the reply (any case) is the correction: a vote for the label on the pilot example
    _, event = reply(slack, engine, "CPILOT", crash["ts"], "Technical", "UBOB")
    assert state_of(engine, crash["ts"]) == (ReviewOutcome.CORRECTED, {"UBOB": "technical"}, None)
    # the same reply delivered again, and again under a new event id: counted once, nothing said
    deliver_reply(slack, engine, "CPILOT", emulator.thread("CPILOT", crash["ts"])[-1], event_id=event)
    deliver_reply(slack, engine, "CPILOT", emulator.thread("CPILOT", crash["ts"])[-1])
    react(slack, engine, "CPILOT", crash_tip["ts"], "x", "UBOB")  # ❌ again, a new event id
    assert state_of(engine, crash["ts"])[1] == {"UBOB": "technical"}
    assert len(told(emulator, "UBOB", crash["ts"])) == 1
    # a second reviewer agrees with the emoji: the dataset's consensus (two votes) settles it
    react(slack, engine, "CPILOT", crash_tip["ts"], "two", "UCAROL")
    assert state_of(engine, crash["ts"]) == (
        ReviewOutcome.CORRECTED,
        {"UBOB": "technical", "UCAROL": "technical"},
        "technical",
    )
    # taking the ❌ back retracts the correction (UCAROL's vote stands)
    react(slack, engine, "CPILOT", crash_tip["ts"], "x", "UBOB", added=False)
    assert state_of(engine, crash["ts"]) == (ReviewOutcome.CORRECTED, {"UCAROL": "technical"}, None)

    # a reply first, by emoji, then the ❌: counted once both are there
    reply(slack, engine, "CPILOT", crash2["ts"], ":two:", "UCAROL")
    assert state_of(engine, crash2["ts"]) == (None, {}, None)
    assert told(emulator, "UCAROL", crash2["ts"]) == [
        "To correct this suggestion to *technical*, react :x: on it."
    ]
    react(slack, engine, "CPILOT", crash2_tip["ts"], "x", "UCAROL")
    assert state_of(engine, crash2["ts"]) == (ReviewOutcome.CORRECTED, {"UCAROL": "technical"}, None)

    # a reply that names no label is explained, in the thread, and counts for nothing; the next one counts
    react(slack, engine, "CPILOT", crash3_tip["ts"], "x", "UBOB")
    reply(slack, engine, "CPILOT", crash3["ts"], "tech support, obviously", "UBOB")
    explained = told(emulator, "UBOB", crash3["ts"])[-1]
    assert explained.startswith("“tech support, obviously” is not a label of *ticket-router*: reply with")
    assert "Nothing was counted" in explained
    assert state_of(engine, crash3["ts"]) == (None, {}, None)
    wrong, _ = reply(slack, engine, "CPILOT", crash3["ts"], "*billing*", "UBOB")
    assert state_of(engine, crash3["ts"]) == (ReviewOutcome.CORRECTED, {"UBOB": "billing"}, None)
    # the reviewer edits the reply: the edit is the correction now; deleting it retracts it
    assert slack.edit("CPILOT", wrong, "technical").status == 200
    wait_until(lambda: state_of(engine, crash3["ts"])[1] == {"UBOB": "technical"}, what="the edit")
    assert slack.delete("CPILOT", {**wrong, "text": "technical"}).status == 200
    wait_until(lambda: state_of(engine, crash3["ts"])[1] == {}, what="the deletion")

    # someone who is not a reviewer: neither the ❌ nor the reply counts
    react(slack, engine, "CPILOT", crash4_tip["ts"], "x", "UDAVE")
    reply(slack, engine, "CPILOT", crash4["ts"], "technical", "UDAVE")
    assert state_of(engine, crash4["ts"]) == (None, {}, None)
    # a reply that agrees with the suggestion, with no ❌, is just a reply
    reply(slack, engine, "CPILOT", crash4["ts"], "account", "UALICE")
    assert told(emulator, "UALICE", crash4["ts"]) == [] and state_of(engine, crash4["ts"]) == (None, {}, None)

    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        rows = {(c.reviewer_id, c.rejected, c.applied) for c in session.exec(select(Correction)).all()}
        live = pilot.version_acceptance(session, versions.get_version(session, project, 1))
        pilot_examples = session.exec(select(Example).where(Example.source == "pilot")).all()
    assert ("UBOB", False, None) in rows and ("UCAROL", True, "technical") in rows
    assert all(e.channel_id == "CPILOT" for e in pilot_examples)
    # by hand: two suggestions corrected (crash, crash2), none accepted; crash3 and crash4 have no votes
    assert (live.rate.accepted, live.rate.reviewed) == (0, 2)


def drafts(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    return (f"Sorry about that: {messages[-1]['content']}", 0.6) if model == "replies-v1" else None


def test_a_cross_and_a_reply_correct_a_draft(slack, emulator, engine, settings):
    with session_scope(engine) as session:
        project = projects.create_project(
            session,
            projects.ProjectSpec(
                name="replies",
                task_type="generation",
                reviewers=["UALICE", "UBOB", "UCAROL"],
                min_per_label=1,
            ),
            owner_id="UALICE",
            channel_id="CGENERAL",
        )
        session.add(Snapshot(id="d" * 64, project_id=project.id))
        session.flush()
        session.add(
            ModelVersion(
                project_id=project.id,
                number=1,
                snapshot_id="d" * 64,
                base_model="tiny",
                artifact_path=str(settings.ftbot_data_dir),
                config={"quantize": False},
            )
        )
    versions.request_move(
        engine, settings, Person("U", operator=True), "promote", project_name="replies", number=1
    )
    emulator.add_channel("CPILOT", "support")
    with FakeInferenceServer(drafts) as server:
        settings.ftbot_inference_url = server.url
        assert slack.slash("pilot replies on <#CPILOT|support>").status == 200
        emulator.wait_for(
            lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT"))
        )
        message = say(slack, "CPILOT", "my parcel is late")
        settled(engine, f"Ev{message['ts'].replace('.', '')}")
        predict.answer_queued(settings, engine)
    tip = emulator.wait_for(lambda: suggestion(emulator, "CPILOT", message["ts"]))

    react(slack, engine, "CPILOT", tip["ts"], "x", "UBOB")  # rejects the draft; asks for the right one
    hint = emulator.wait_for(lambda: told(emulator, "UBOB", message["ts"]), what="the hint")
    assert "reply in this thread with the right output" in hint[0]
    better, _ = reply(
        slack, engine, "CPILOT", message["ts"], "We are sorry: your parcel ships *today*.", "UBOB"
    )

    def pilot_examples() -> dict[str, Example]:
        with session_scope(engine) as session:
            rows = session.exec(select(Example).where(Example.source == "pilot")).all()
            return {e.message_ts: e for e in rows}

    found = pilot_examples()
    draft, corrected = found[message["ts"]], found[better["ts"]]
    # the draft is rejected; the reply is an example of its own: the message as input, the reply as target
    assert draft.target_text == "Sorry about that: my parcel is late"
    assert (corrected.input_text, corrected.target_text, corrected.author_id) == (
        "my parcel is late",
        "We are sorry: your parcel ships today.",
        "UBOB",
    )
    # another reviewer confirms the correction by reacting on the reply: consensus, usable for training
    react(slack, engine, "CPILOT", better["ts"], "white_check_mark", "UCAROL")
    with session_scope(engine) as session:
        project = projects.get_project(session, "replies")
        states = {s.example.message_ts: s for s in gates.example_states(session, project)}
        (prediction,) = session.exec(select(Prediction)).all()
    assert states[better["ts"]].votes == {"UBOB": "accept", "UCAROL": "accept"}
    assert gates.usable(states[better["ts"]]) and prediction.outcome == ReviewOutcome.CORRECTED
    assert states[message["ts"]].votes == {"UBOB": "reject"}

    # the ❌ taken back: the correction leaves the dataset (and the draft's reject vote goes too)
    react(slack, engine, "CPILOT", tip["ts"], "x", "UBOB", added=False)
    assert better["ts"] not in {ts for ts, e in pilot_examples().items() if e.deleted_at is None}
