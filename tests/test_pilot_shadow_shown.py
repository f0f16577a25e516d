"""A shadow candidate's answers shown to the project's reviewers only, through signed requests: the owner
chooses it with ``/finetune shadow <project> vN show-reviewers``; each answer then reaches every
reviewer (listed users and the members of listed user groups) as an ephemeral message in the pilot
message's thread, once, and no one else; by default (``/finetune shadow <project> vN``) no one sees it."""

from __future__ import annotations

from sqlmodel import col, select

from runner.core.db import session_scope
from runner.core.models import Prediction, Project
from runner.jobs import predict
from runner.slack import notify
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import PROJECT, make_project, right_label, say, settled, suggestion
from tests.registry_support import move

REVIEWERS = {"UALICE", "UBOB", "UCAROL", "UERIN"}  # UERIN through the reviewer group


def two_versions(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    """v1 calls crashes account problems; v2 routes them right."""
    truth = right_label(messages[-1]["content"])
    if model == f"{PROJECT}-v1":
        return ("account" if truth == "technical" else truth), 0.8
    if model == f"{PROJECT}-v2":
        return truth, 0.95
    return None


def shadow_ephemerals(emulator, thread_ts: str) -> list[dict]:
    return [
        e
        for e in emulator.ephemerals("CPILOT")
        if e.get("thread_ts") == thread_ts and e["text"].startswith("Shadow ")
    ]


def test_the_shadow_is_shown_to_reviewers_only_when_the_owner_chooses(slack, emulator, engine, settings):
    make_project(engine, settings, count=2, reviewers=("UALICE", "UBOB", "UCAROL"))
    with session_scope(engine) as session:
        project = session.exec(select(Project)).one()
        project.reviewer_groups = ["SREVIEW"]
        session.add(project)
    emulator.add_usergroup("SREVIEW", "reviewers", ["UERIN"])
    move(engine, settings, "promote", 1)
    emulator.add_channel("CPILOT", "support")
    with FakeInferenceServer(two_versions) as server:
        settings.ftbot_inference_url = server.url
        assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
        emulator.wait_for(
            lambda: any("turned on the pilot" in m["text"] for m in emulator.messages("CPILOT"))
        )
        assert slack.slash("shadow ticket-router v2 loudly").status == 200
        emulator.wait_for(
            lambda: any("Usage: `/finetune shadow" in e["text"] for e in emulator.ephemerals()), what="usage"
        )
        assert slack.slash("shadow ticket-router v2 show-reviewers").status == 200
        on = emulator.wait_for(
            lambda: next((m for m in emulator.messages("CPILOT") if "in shadow here" in m["text"]), None)
        )
        assert "shown to the project's reviewers only" in on["text"]

        crash = say(slack, "CPILOT", "the app crashes on start")
        settled(engine, f"Ev{crash['ts'].replace('.', '')}")
        predict.answer_queued(settings, engine)
        shown = suggestion(emulator, "CPILOT", crash["ts"])
        assert shown is not None and shown["text"].startswith("Suggestion from ticket-router v1: account")
        seen = emulator.wait_for(
            lambda: (
                len(shadow_ephemerals(emulator, crash["ts"])) == 4
                and shadow_ephemerals(emulator, crash["ts"])
            )
        )
        # every reviewer, and no one else, sees v2's answer, in the message's thread
        assert {e["user"] for e in seen} == REVIEWERS
        assert all(
            e["text"]
            == "Shadow ticket-router v2 would answer: technical (confidence 95%) (shown to reviewers only)"
            for e in seen
        )
        assert "beside v1's suggestion" in str(seen[0]["blocks"])
        # the channel itself never shows it
        assert not any("v2" in m.get("text", "") for m in emulator.messages("CPILOT") if m["ts"] != on["ts"])
        # a batch posted again (a retried job) shows it once
        with session_scope(engine) as session:
            ids = list(session.exec(select(Prediction.id).order_by(col(Prediction.id))).all())
        notify.post_suggestions(settings, engine, [i for i in ids if i is not None])
        assert len(shadow_ephemerals(emulator, crash["ts"])) == 4

        # the default: the same candidate in shadow, shown to no one
        assert slack.slash("shadow ticket-router v2").status == 200
        emulator.wait_for(lambda: any("production, unseen" in m["text"] for m in emulator.messages("CPILOT")))
        later = say(slack, "CPILOT", "crash after the update")
        settled(engine, f"Ev{later['ts'].replace('.', '')}")
        predict.answer_queued(settings, engine)
        emulator.wait_for(lambda: suggestion(emulator, "CPILOT", later["ts"]), what="the suggestion")
        assert sorted(server.models_asked()).count(f"{PROJECT}-v2") == 2  # it did answer
    assert shadow_ephemerals(emulator, later["ts"]) == []
