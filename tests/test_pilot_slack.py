"""Pilot mode through signed requests: owners turn it on, new messages get production's suggestion in
their thread, reviewers' reactions become labeled examples with provenance (duplicates and
retractions included), and the examples follow the dataset's own consensus rules."""

from __future__ import annotations

import pytest
from sqlmodel import col, select

from runner.core import audit
from runner.core.db import session_scope
from runner.core.models import Example, Prediction, ReviewOutcome
from runner.data import gates, projects
from runner.jobs import predict
from runner.registry import pilot
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import (
    LEGEND,
    PROJECT,
    deliver_message,
    make_project,
    react,
    right_label,
    say,
    settled,
    suggestion,
)
from tests.registry_support import move


def oracle(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    """v1 routes every ticket right; nothing else is served."""
    if model != f"{PROJECT}-v1":
        return None
    return right_label(messages[-1]["content"]), 0.9


def predictions(engine) -> list[Prediction]:
    with session_scope(engine) as session:
        return list(session.exec(select(Prediction).order_by(col(Prediction.id))).all())


@pytest.fixture
def piloting(slack, emulator, engine, settings):
    """ticket-router with v1 in production and a fake inference server answering for it."""
    make_project(engine, settings, count=2)
    move(engine, settings, "promote", 1)
    emulator.add_channel("CPILOT", "support")
    with FakeInferenceServer(oracle) as server:
        settings.ftbot_inference_url = server.url
        yield server


def answer(settings, engine) -> None:
    """What the predict worker does with the queue (the job's own function, in this process)."""
    predict.answer_queued(settings, engine)


def test_only_owners_turn_the_pilot_on_and_off(slack, emulator, engine, settings, piloting):
    assert slack.slash("pilot ticket-router on <#CPILOT|support>", user="UBOB").status == 200
    refusal = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UBOB"), None), what="refusal"
    )
    assert "Only the project owner" in refusal["text"]
    assert slack.slash("pilot ticket-router sideways").status == 200
    emulator.wait_for(lambda: any("Usage: `/finetune pilot" in e["text"] for e in emulator.ephemerals()))

    assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
    on = emulator.wait_for(
        lambda: next((m for m in emulator.messages("CPILOT") if "turned on the pilot" in m["text"]), None)
    )
    assert "v1's suggestion" in on["text"]
    first = say(slack, "CPILOT", "my invoice is wrong")
    settled(engine, f"Ev{first['ts'].replace('.', '')}")
    assert len(predictions(engine)) == 1

    assert slack.slash("pilot ticket-router off").status == 200  # from another channel: stays in CPILOT
    emulator.wait_for(lambda: any("turned off the pilot" in m["text"] for m in emulator.messages("CPILOT")))
    later = say(slack, "CPILOT", "the app crashes")
    settled(engine, f"Ev{later['ts'].replace('.', '')}")
    assert len(predictions(engine)) == 1
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        rows = [
            (e.user_id, e.action, e.allowed) for e in reversed(audit.entries(session, project_id=project.id))
        ]
    assert [r for r in rows if r[1] == "pilot"] == [
        ("UBOB", "pilot", False),
        ("UALICE", "pilot", True),
        ("UALICE", "pilot", True),
    ]


def test_reviews_become_examples_with_provenance(slack, emulator, engine, settings, piloting):
    assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
    emulator.wait_for(lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT")))
    texts = [
        "please send the invoice again",
        "the app crashes on start",
        "reset my password",
        "where is my parcel",
    ]
    messages = [say(slack, "CPILOT", text) for text in texts]
    for message in messages:
        settled(engine, f"Ev{message['ts'].replace('.', '')}")
    # the same message delivered again (a retry with a new event id): asked once
    settled(engine, deliver_message(slack, "CPILOT", messages[0], event_id="EvAgain1"))
    # a thread reply and ftbot's own messages are not new messages
    slack.reply("CPILOT", messages[1]["ts"], "any news?", "UDAVE")
    answer(settings, engine)
    assert len(predictions(engine)) == 4 and piloting.models_asked() == [f"{PROJECT}-v1"] * 4
    shown = [emulator.wait_for(lambda m=m: suggestion(emulator, "CPILOT", m["ts"])) for m in messages]
    assert shown[0]["text"] == "Suggestion from ticket-router v1: billing (confidence 90%)"
    assert ":two: technical" in str(shown[1]["blocks"])

    invoice, crash, password, parcel = (s["ts"] for s in shown)
    react(slack, engine, "CPILOT", invoice, "white_check_mark", "UBOB")  # accepted
    duplicate = react(slack, engine, "CPILOT", invoice, "white_check_mark", "UBOB")  # Slack sends it again
    react(slack, engine, "CPILOT", invoice, "white_check_mark", "UBOB", event_id=duplicate)  # a redelivery
    react(slack, engine, "CPILOT", crash, LEGEND["account"], "UCAROL")  # corrected: technical → account
    react(slack, engine, "CPILOT", password, "white_check_mark", "UBOB")
    react(slack, engine, "CPILOT", password, "white_check_mark", "UBOB", added=False)  # retracted
    react(slack, engine, "CPILOT", parcel, "white_check_mark", "UDAVE")  # not a reviewer
    react(slack, engine, "CPILOT", parcel, "thumbsup", "UBOB")  # not a review
    emulator.wait_for(lambda: any(e["user"] == "UDAVE" for e in emulator.ephemerals()), what="the hint")

    by_message = {p.message_ts: p for p in predictions(engine)}
    outcomes = [by_message[m["ts"]].outcome for m in messages]
    assert outcomes == [ReviewOutcome.ACCEPTED, ReviewOutcome.CORRECTED, None, None]
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        examples = {e.message_ts: e for e in session.exec(select(Example)).all()}
        states = {s.example.message_ts: s for s in gates.example_states(session, project)}
        live = pilot.version_acceptance(session, project_version(session, project, 1))
    # every reviewed suggestion is an example of the project, from the pilot, linked from its prediction
    assert set(examples) == {m["ts"] for m in messages[:3]}  # the retracted one stays, without votes
    assert all(e.source == "pilot" and e.channel_id == "CPILOT" for e in examples.values())
    assert examples[messages[0]["ts"]].input_text == texts[0]
    assert by_message[messages[0]["ts"]].example_id == examples[messages[0]["ts"]].id
    assert states[messages[0]["ts"]].votes == {"UBOB": "billing"}
    assert states[messages[1]["ts"]].votes == {"UCAROL": "account"}
    assert states[messages[2]["ts"]].votes == {}
    # one vote is a review, not yet a consensus: the dataset's rule (two votes at least) still holds
    assert all(s.label is None for s in states.values())
    react(slack, engine, "CPILOT", invoice, LEGEND["billing"], "UCAROL")
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        state = next(
            s for s in gates.example_states(session, project) if s.example.message_ts == messages[0]["ts"]
        )
    assert state.label == "billing"
    assert (live.rate.accepted, live.rate.reviewed, live.suggested) == (1, 2, 4)


def project_version(session, project, number):
    from runner.registry import versions

    return versions.get_version(session, project, number)


SHADOW_TICKETS = [
    "invoice twice",
    "crash at login",
    "password expired",
    "parcel lost",
    "invoice missing",
    "crash on save",
]


def both_versions(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    """v1 mistakes the two crash tickets for account ones; v2 routes everything right."""
    truth = right_label(messages[-1]["content"])
    if model == f"{PROJECT}-v1":
        return ("account" if truth == "technical" else truth), 0.8
    if model == f"{PROJECT}-v2":
        return truth, 0.95
    return None


def test_a_candidate_in_shadow_is_compared_on_live_messages_then_promoted(slack, emulator, engine, settings):
    make_project(engine, settings, count=2)
    move(engine, settings, "promote", 1)
    emulator.add_channel("CPILOT", "support")
    settings.ftbot_shadow_min_reviews = 6
    with FakeInferenceServer(both_versions) as server:
        settings.ftbot_inference_url = server.url
        assert slack.slash("shadow ticket-router v2").status == 200  # no pilot yet
        emulator.wait_for(lambda: any("Turn the pilot" in e["text"] for e in emulator.ephemerals()))
        assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
        # Commands run concurrently after their acks, as Slack's do: the pilot is on once it says so.
        emulator.wait_for(
            lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT"))
        )
        assert slack.slash("shadow ticket-router v2", user="UBOB").status == 200  # not the owner
        emulator.wait_for(lambda: any(e["user"] == "UBOB" for e in emulator.ephemerals()))
        assert slack.slash("shadow ticket-router v2").status == 200
        emulator.wait_for(lambda: any("in shadow here" in m["text"] for m in emulator.messages("CPILOT")))
        messages = [say(slack, "CPILOT", text) for text in SHADOW_TICKETS]
        for message in messages:
            settled(engine, f"Ev{message['ts'].replace('.', '')}")
        answer(settings, engine)
        assert sorted(server.models_asked()) == [f"{PROJECT}-v1"] * 6 + [f"{PROJECT}-v2"] * 6
    shown = [emulator.wait_for(lambda m=m: suggestion(emulator, "CPILOT", m["ts"])) for m in messages]
    # the shadow's answers are stored, never shown
    assert all(s["text"].startswith("Suggestion from ticket-router v1") for s in shown)
    assert not any("v2:" in m.get("text", "") for m in emulator.messages("CPILOT"))
    assert len(predictions(engine)) == 12

    for text, posted in zip(SHADOW_TICKETS, shown, strict=True):
        says = both_versions(f"{PROJECT}-v1", [{"content": text}])
        assert says is not None
        right = right_label(text) == says[0]
        react(
            slack,
            engine,
            "CPILOT",
            posted["ts"],
            "white_check_mark" if right else LEGEND[right_label(text)],
            "UBOB",
        )
    report = emulator.wait_for(
        lambda: next((m for m in emulator.messages("CPILOT") if m["text"].startswith("Shadow report")), None),
        what="the shadow report",
    )
    # by hand: v2 right on 6 of 6, v1 on 4 of 6; the 2 discordant pairs both favour v2: p = 2 × (1/2)² = 0.5
    assert report["text"].startswith(
        "Shadow report of ticket-router v2 against v1 on 6 labeled pilot messages"
    )
    assert "100% (95% CI 61%–100%)" in report["text"] and "67% (95% CI 30%–90%)" in report["text"]
    assert "p = 0.500" in str(report["blocks"]) and "Not better beyond noise" in str(report["blocks"])
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        v1 = pilot.version_acceptance(session, project_version(session, project, 1))
        v2 = pilot.version_acceptance(session, project_version(session, project, 2))
    assert (v1.rate.accepted, v1.rate.reviewed) == (
        4,
        6,
    ) and v2.rate.reviewed == 0  # shadows are not suggestions

    slack.press(report, "Promote v2", user="UALICE", channel="CPILOT")
    emulator.wait_for(
        lambda: any("v1 → v2 is in production" in m["text"] for m in emulator.messages("CGENERAL"))
    )
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        from runner.registry import versions

        assert versions.production(session, project).number == 2  # type: ignore[union-attr]
        assert versions.history(session, project)[0].reason == "from the shadow report of v2"


def test_a_predicted_label_mix_unlike_training_raises_one_alert(slack, emulator, engine, settings):
    from runner.core.models import AlertKind, DriftAlert, Snapshot, SnapshotExample, Split

    make_project(engine, settings, count=1)
    with session_scope(engine) as session:  # v1 was trained on the four queues in equal parts
        snapshot = session.get(Snapshot, "f" * 64)
        assert snapshot is not None
        for i, label in enumerate(["billing", "technical", "account", "shipping"] * 5):
            session.add(
                SnapshotExample(
                    snapshot_id=snapshot.id,
                    example_id=1000 + i,
                    split=Split.TRAIN,
                    input_text="t",
                    target=label,
                    label=label,
                )
            )
    move(engine, settings, "promote", 1)
    emulator.add_channel("CPILOT", "support")
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL"])
    settings.ftbot_oncall = ("SONCALL",)
    settings.ftbot_label_shift_min = 8
    tickets = ["invoice", "crash", "password", "parcel"] * 3

    def billing_always(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
        return "billing", 0.7

    with FakeInferenceServer(billing_always) as server:
        settings.ftbot_inference_url = server.url
        assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
        emulator.wait_for(
            lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT"))
        )
        for batch in (tickets[:4], tickets[4:8], tickets[8:]):
            for text in batch:
                message = say(slack, "CPILOT", f"my {text} problem {len(predictions(engine))}")
                settled(engine, f"Ev{message['ts'].replace('.', '')}")
            answer(settings, engine)
    # 4 suggestions: too few to judge; 8: billing 100% against 25% in training, distance 0.75
    alerts = [m for m in emulator.messages("CPILOT") if "shifted from its training mix" in m.get("text", "")]
    assert len(alerts) == 1
    assert alerts[0]["text"].startswith("The labels ticket-router v1 predicts shifted from its training mix")
    assert (
        "distance 0.75 over 8 suggestions" in alerts[0]["text"] and "<!subteam^SONCALL>" in alerts[0]["text"]
    )
    assert "billing: predicted 100%, trained on 25%" in str(alerts[0]["blocks"])
    assert "Rollback v1" in str(alerts[0]["blocks"])
    with session_scope(engine) as session:
        (raised,) = session.exec(select(DriftAlert)).all()
    assert raised.kind == AlertKind.LABEL_MIX and raised.evidence["predicted"] == 8
