"""Blind A/B end to end, through signed requests and a real predict worker:

v1 in production, v2 and v3 registered with their evaluation summaries → the owner starts a blind
A/B of v2 and v1 on held-out examples → the predict worker posts each item with two answers as A
and B → nothing posted names a version → reviewers react (a change of mind, a retracted reaction, a
retried event, a reaction delivered twice, a non-reviewer) → the owner closes it → every item shows
who wrote what, the result (win rate, bootstrap interval, computed here by hand) is posted and shown
on v2's evaluation summary → with require-ab on, promoting v2 (which lost) is refused and audited →
a three-version comparison on a newer snapshot closes by itself once every item has its vote, with
Bradley–Terry scores → v3, which won against production, is promoted.

Answers come from a fake OpenAI-compatible server (``FTBOT_INFERENCE_URL``), so what each version
answers is known in advance; reviewers judge what the messages show (the right label wins, a tie
when both or neither are right). Nothing waits on time.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from redis import Redis
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import (
    AuditEntry,
    Comparison,
    ComparisonStatus,
    Prediction,
    PredictionStatus,
    Snapshot,
    SnapshotExample,
    Split,
)
from runner.data import abtest, projects
from runner.jobs.queues import PREDICT_QUEUE, queue
from runner.registry import abtests, versions
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import PROJECT, make_project, react, right_label
from tests.registry_support import post_summary
from tests.training_support import run_worker_burst, wait_until

WRONG = {"billing": "shipping", "technical": "account", "account": "billing", "shipping": "technical"}
HELD_OUT = [
    "the invoice shows the wrong amount",  # v1 and v2 right: a tie
    "the app crashes when I log in",  # v1 right, v2 wrong
    "I forgot my password",  # v1 right, v2 wrong
    "my parcel never came",  # v1 wrong, v2 right
]
LATER = ["a second invoice arrived", "another crash after the update", "password reset link is broken"]
V2_RIGHT = {HELD_OUT[0], HELD_OUT[3]}
V1_WRONG = {HELD_OUT[3], *LATER}


def oracle(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    text = messages[-1]["content"]
    truth = right_label(text)
    if model == f"{PROJECT}-v1":
        return (WRONG[truth] if text in V1_WRONG else truth), 0.9
    if model == f"{PROJECT}-v2":
        return (truth if text in V2_RIGHT else WRONG[truth]), 0.8
    if model == f"{PROJECT}-v3":
        return truth, 0.95
    return None


def held_out_snapshot(engine, snapshot_id: str, texts: list[str]) -> None:
    """A snapshot whose eval side holds `texts` (the project's latest)."""
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        session.add(Snapshot(id=snapshot_id, project_id=project.id, n_eval=len(texts)))
        session.flush()
        for i, text in enumerate(texts):
            session.add(
                SnapshotExample(
                    snapshot_id=snapshot_id,
                    example_id=1000 * len(snapshot_id) + i,
                    split=Split.EVAL,
                    input_text=text,
                    target=right_label(text),
                    label=right_label(text),
                )
            )


def channel_message(emulator, words: str, channel: str = "CGENERAL") -> dict[str, Any] | None:
    return next((m for m in emulator.messages(channel) if words in m.get("text", "")), None)


def summary(emulator, number: int) -> dict[str, Any] | None:
    return channel_message(emulator, f"Evaluation of {PROJECT} v{number}:")


def production(engine) -> int | None:
    with session_scope(engine) as session:
        current = versions.production(session, projects.get_project(session, PROJECT))
        return current.number if current else None


def item_messages(emulator, header: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The comparison's items, in position order, once all `n` are posted."""

    def posted() -> list[dict[str, Any]] | None:
        found = [
            m
            for m in emulator.thread("CGENERAL", header["ts"])
            if m["ts"] != header["ts"] and " · item " in m.get("text", "")
        ]
        return found if len(found) == n else None

    found = emulator.wait_for(posted, what=f"{n} items")
    return sorted(found, key=lambda m: int(re.search(r"item (\d+) of", m["text"]).group(1)))  # type: ignore[union-attr]


def shown(message: dict[str, Any]) -> tuple[str, str, str]:
    """``(input, answer A, answer B)`` as the item shows them."""
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    given = next(t for t in texts if t.startswith("*Input*\n")).removeprefix("*Input*\n")
    answers = [re.search(r"```(.*)```", t, re.S).group(1) for t in texts if t.startswith(("*A*", "*B*"))]  # type: ignore[union-attr]
    return given, answers[0], answers[1]


def judge(message: dict[str, Any]) -> str:
    """What a careful reviewer reacts: the right label wins; both or neither right is a tie."""
    given, a, b = shown(message)
    right = right_label(given)
    if (a == right) == (b == right):
        return "heavy_equals_sign"
    return "a" if a == right else "b"


OTHER = {"a": "b", "b": "a", "heavy_equals_sign": "a"}
VERSION_NAMED = re.compile(r"\bv\d+\b|ticket-router-v\d")


def comparison(engine, comparison_id: int) -> Comparison:
    with session_scope(engine) as session:
        found = session.get(Comparison, comparison_id)
        assert found is not None
        session.expunge(found)
        return found


def audit_rows(engine, action: str) -> list[AuditEntry]:
    with session_scope(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.action == action)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_blind_ab_hidden_until_close_result_on_summary_and_promote_gate(
    bot, slack, emulator, engine, settings, database_url
):
    settings.ftbot_base_model = "tiny"
    make_project(engine, settings, count=3, reviewers=("UBOB", "UCAROL"))
    held_out_snapshot(engine, "a" * 64, HELD_OUT)
    server = FakeInferenceServer(oracle).__enter__()
    settings.ftbot_inference_url = server.url
    try:
        post_summary(engine, settings, 1)
        slack.press(emulator.wait_for(lambda: summary(emulator, 1)), "Promote v1", user="UALICE")
        emulator.wait_for(lambda: channel_message(emulator, "v1 is in production"), what="v1 promoted")
        post_summary(engine, settings, 2)
        v2_summary = emulator.wait_for(lambda: summary(emulator, 2), what="v2's summary")

        # --- only the owner starts a comparison ---------------------------------------------------
        assert slack.slash("compare ticket-router v2 v1 n=4", user="UBOB").status == 200
        emulator.wait_for(
            lambda: (
                any("Only the project owner" in r.get("text", "") for r in emulator.responses())
                or any("Only the project owner" in e["text"] for e in emulator.ephemerals())
            ),
            what="the refusal",
        )
        ack = slack.slash("compare ticket-router v2 v1 n=4 votes=3", response_key="start")
        assert ack.status == 200 and not ack.body  # the ack is empty: everything comes after it
        header = emulator.wait_for(lambda: channel_message(emulator, "Blind A/B #1 of"), what="the header")
        assert "held-out examples" in header["text"]
        run_worker_burst(settings, database_url, emulator, queues="predict")
        items = item_messages(emulator, header, 4)
        assert sorted(shown(m)[0] for m in items) == sorted(HELD_OUT)

        # --- nothing says which version wrote which answer -----------------------------------------
        before_close = [
            *emulator.thread("CGENERAL", header["ts"]),
            *emulator.ephemerals(),
            *emulator.responses("start"),
        ]
        for message in before_close:
            seen = json.dumps({"text": message.get("text"), "blocks": message.get("blocks")})
            assert not VERSION_NAMED.search(seen), seen

        # --- reviewers react ---------------------------------------------------------------------
        by_input = {shown(m)[0]: m for m in items}
        verdicts = {text: judge(m) for text, m in by_input.items()}
        assert sorted(verdicts.values()).count("heavy_equals_sign") == 1
        tie_item, changed, retracted, v2_won = (by_input[t] for t in HELD_OUT)
        # UBOB first reacts the wrong letter, changes his mind, then removes the first reaction.
        react(slack, engine, "CGENERAL", changed["ts"], OTHER[verdicts[HELD_OUT[1]]], "UBOB")
        react(slack, engine, "CGENERAL", changed["ts"], verdicts[HELD_OUT[1]], "UBOB")
        react(slack, engine, "CGENERAL", changed["ts"], OTHER[verdicts[HELD_OUT[1]]], "UBOB", added=False)
        # UCAROL reacts the wrong letter and takes it back before voting.
        react(slack, engine, "CGENERAL", retracted["ts"], OTHER[verdicts[HELD_OUT[2]]], "UCAROL")
        react(slack, engine, "CGENERAL", retracted["ts"], OTHER[verdicts[HELD_OUT[2]]], "UCAROL", added=False)
        for text in HELD_OUT:
            for reviewer in ("UBOB", "UCAROL"):
                if (text, reviewer) == (HELD_OUT[1], "UBOB"):
                    continue
                event = react(slack, engine, "CGENERAL", by_input[text]["ts"], verdicts[text], reviewer)
                if text == HELD_OUT[0] and reviewer == "UCAROL":  # Slack retries the same event
                    react(slack, engine, "CGENERAL", tie_item["ts"], verdicts[text], reviewer, event_id=event)
        react(slack, engine, "CGENERAL", v2_won["ts"], verdicts[HELD_OUT[3]], "UBOB")  # again, a new event id
        react(slack, engine, "CGENERAL", tie_item["ts"], "a", "UDAVE")  # not a reviewer: not counted
        emulator.wait_for(lambda: any(e["user"] == "UDAVE" for e in emulator.ephemerals()), what="the hint")

        with session_scope(engine) as session:
            live = abtests.live_votes(session, 1)
        assert sorted(len(v) for v in live.values()) == [2, 2, 2, 2]
        assert comparison(engine, 1).status == ComparisonStatus.OPEN  # votes=3: it waits for the owner

        # --- only the owner closes it; then everything is shown ------------------------------------
        assert slack.slash("compare close 1", user="UBOB").status == 200
        wait_until(lambda: len(audit_rows(engine, "compare")) == 3, what="the refused close audited")
        assert comparison(engine, 1).status == ComparisonStatus.OPEN
        assert slack.slash("compare close 1").status == 200
        result = emulator.wait_for(lambda: channel_message(emulator, "Result of Blind A/B #1"), what="result")
    finally:
        server.__exit__(None, None, None)

    closed = comparison(engine, 1)
    assert closed.status == ComparisonStatus.CLOSED and closed.closed_by == "UALICE"
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        number = {v.id: v.number for v in versions.versions(session, project)}
        stored = abtests.items(session, 1)
    revealed = item_messages(emulator, header, 4)
    for item, message in zip(stored, revealed, strict=True):
        a, b = number[item.version_a_id], number[item.version_b_id]
        blocks = json.dumps(message["blocks"], ensure_ascii=False)
        assert f"*A* — v{a}" in blocks and f"*B* — v{b}" in blocks and "closed" in message["text"]
        assert {a, b} == {1, 2}
    closed_header = next(m for m in emulator.messages("CGENERAL") if m["ts"] == header["ts"])
    assert "is closed" in closed_header["text"]

    # By hand: per reviewer v2 scores ½ (the tie) + 0 + 0 + 1 = 1.5 of 4, so 3 of 8 votes; v1 5 of 8.
    # The interval resamples items with their two votes: v1's points per item, in position order.
    v1_points = {HELD_OUT[0]: 1.0, HELD_OUT[1]: 2.0, HELD_OUT[2]: 2.0, HELD_OUT[3]: 0.0}
    clusters = [(v1_points[item.input_text], 2) for item in stored]
    low, high = abtest.bootstrap_ratio(clusters, seed=closed.seed)  # type: ignore[misc]
    v2_clusters = [(2 - p, v) for p, v in clusters]
    low2, high2 = abtest.bootstrap_ratio(v2_clusters, seed=closed.seed)  # type: ignore[misc]
    text = json.dumps(result, ensure_ascii=False)
    assert f"v1: won 62% of 8 votes (95% CI {low * 100:.0f}–{high * 100:.0f}%)" in text
    assert f"v2: won 38% of 8 votes (95% CI {low2 * 100:.0f}–{high2 * 100:.0f}%)" in text
    assert "a tie counting half" in text and "Bradley" not in text
    rows = {r["version"]: r for r in closed.result["versions"]}  # type: ignore[index]
    assert (rows[1]["points"], rows[1]["votes"], rows[2]["points"]) == (5.0, 8, 3.0)
    assert rows[1]["ci"] == [low, high]

    # A reaction after the close changes nothing.
    react(slack, engine, "CGENERAL", revealed[0]["ts"], "b", "UCAROL")
    assert comparison(engine, 1).result == closed.result

    # --- the result on v2's evaluation summary ------------------------------------------------------
    updated = emulator.wait_for(
        lambda: (
            "Blind A/B #1"
            in json.dumps(next(m for m in emulator.messages("CGENERAL") if m["ts"] == v2_summary["ts"]))
        ),
        what="v2's summary updated",
    )
    assert updated
    v2_now = next(m for m in emulator.messages("CGENERAL") if m["ts"] == v2_summary["ts"])
    assert "Blind A/B #1 against v1: won 38% of 8 votes" in json.dumps(v2_now["blocks"], ensure_ascii=False)

    # Closing again says so and shows it again (for a reveal Slack missed), without a second result.
    updates_before = len(emulator.calls_to("chat.update"))
    assert slack.slash("compare close 1").status == 200
    emulator.wait_for(lambda: "is closed already" in said(emulator), what="closed already")
    emulator.wait_for(lambda: len(emulator.calls_to("chat.update")) >= updates_before + 7, what="shown again")
    results = [m for m in emulator.messages("CGENERAL") if m["text"].startswith("Result of Blind A/B #1")]
    assert len(results) == 1 and comparison(engine, 1).result == closed.result

    # --- require-ab: v2 lost, so promote refuses it (audited) ----------------------------------------
    assert slack.slash("settings ticket-router require-ab on", user="UBOB").status == 200
    wait_until(lambda: any(not r.allowed for r in audit_rows(engine, "settings")), what="the refusal audited")
    assert slack.slash("settings ticket-router require-ab on").status == 200
    emulator.wait_for(lambda: channel_message(emulator, "to require a won blind A/B"), what="the setting")
    slack.press(v2_now, "Promote v2", user="UALICE")
    emulator.wait_for(
        lambda: any("requires a won blind A/B" in e["text"] for e in emulator.ephemerals()),
        what="the refusal",
    )
    assert production(engine) == 1
    (refused,) = [r for r in audit_rows(engine, "promote") if not r.allowed]
    assert refused.user_id == "UALICE" and refused.detail.startswith("refused:") and "v2" in refused.detail

    # --- three versions on a newer snapshot: it closes by itself, with Bradley–Terry scores ---------
    held_out_snapshot(engine, "b" * 64, LATER)
    post_summary(engine, settings, 3)
    v3_summary = emulator.wait_for(lambda: summary(emulator, 3), what="v3's summary")
    server = FakeInferenceServer(oracle).__enter__()
    settings.ftbot_inference_url = server.url
    try:
        assert slack.slash("compare ticket-router v3 v2 v1 n=3 votes=1").status == 200
        header2 = emulator.wait_for(lambda: channel_message(emulator, "Blind A/B #2 of"), what="header 2")
        run_worker_burst(settings, database_url, emulator, queues="predict")
        items2 = item_messages(emulator, header2, 3)
        for message in items2:
            assert not VERSION_NAMED.search(json.dumps(message["blocks"]))
            react(slack, engine, "CGENERAL", message["ts"], judge(message), "UBOB")
        result2 = emulator.wait_for(
            lambda: channel_message(emulator, "Result of Blind A/B #2"), what="result 2"
        )
    finally:
        server.__exit__(None, None, None)
    assert comparison(engine, 2).closed_by == "ftbot"
    # By hand: v3 beats v2 and v1 (its answers are right, theirs wrong); v2 and v1 tie: ½ of 2 each.
    text2 = json.dumps(result2, ensure_ascii=False)
    assert "v3: won 100% of 2 votes" in text2 and "v1: won 25% of 2 votes" in text2
    assert "v2: won 25% of 2 votes" in text2 and "Bradley–Terry" in text2
    compare_audit = audit_rows(engine, "compare")
    assert any(r.user_id == "ftbot" and "close" in r.target for r in compare_audit)
    assert [r.detail for r in compare_audit if r.allowed and r.target == "blind A/B"] == [
        "#1: v2 v1",
        "#2: v3 v2 v1",
    ]

    # --- v3 won against production: promote goes through -------------------------------------------
    v3_now = next(m for m in emulator.messages("CGENERAL") if m["ts"] == v3_summary["ts"])
    assert "Blind A/B #2 against v2, v1: won 100% of 2 votes" in json.dumps(
        v3_now["blocks"], ensure_ascii=False
    )
    slack.press(v3_now, "Promote v3", user="UALICE")
    emulator.wait_for(lambda: channel_message(emulator, "v3 is in production"), what="v3 promoted")
    assert production(engine) == 3

    # --- App Home shows the latest comparison and the rule --------------------------------------------
    slack.event({"type": "app_home_opened", "user": "UALICE", "channel": "D1", "tab": "home"})
    home = json.dumps(
        emulator.wait_for(lambda: emulator.home_view("UALICE"), what="home"), ensure_ascii=False
    )
    assert "Blind A/B #2: v3 won 100% of 2 votes" in home
    assert "promote requires a won blind A/B against production" in home


def said(emulator) -> str:
    """Everything ftbot told people privately so far (ephemerals and response URLs)."""
    return json.dumps([*emulator.ephemerals(), *emulator.responses()], ensure_ascii=False)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_compare_refuses_bad_requests_clearly_and_takes_pilot_messages_when_asked(
    bot, slack, emulator, engine, settings
):
    make_project(engine, settings, count=3, reviewers=("UBOB", "UCAROL"))
    refusals = {
        "compare ticket-router v1": "Usage: `/finetune compare",
        "compare ticket-router v1 v1": "two or more different versions",
        "compare ticket-router v1 v9": "has no v9",
        "compare ticket-router v1 v2 v3 n=2": "n must be between 3",
        "compare ticket-router v1 v2 n=lots": "n= takes a whole number",
        "compare ticket-router v1 v2 from=web": "from= takes heldout or pilot",
        "compare ticket-router v1 v2 colour=red": "I did not understand `colour=red`",
        "compare ticket-router v1 v2": "too few held-out examples of the latest snapshot or recent pilot",
        "compare ticket-router v1 v2 from=pilot": "too few recent pilot messages",
        "compare close 7": "no blind A/B #7",
        "settings ticket-router require-ab maybe": "Usage: `/finetune settings",
    }
    for text, expected in refusals.items():
        assert slack.slash(text).status == 200
        emulator.wait_for(lambda expected=expected: expected in said(emulator), what=expected)
    with session_scope(engine) as session:
        assert session.exec(select(Comparison)).all() == []

    # Three pilot messages (one delivered twice, so asked of two versions) become the inputs.
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        v1 = versions.get_version(session, project, 1)
        v2 = versions.get_version(session, project, 2)
        texts = ["the invoice is wrong", "the app crashes", "my parcel is late"]
        for i, text in enumerate(texts):
            for version in (v1, v2) if i == 0 else (v1,):
                session.add(
                    Prediction(
                        project_id=project.id,
                        version_id=version.id,
                        channel_id="CPILOT",
                        message_ts=f"1700000100.00000{i}",
                        input_text=text,
                        status=PredictionStatus.DONE,
                        shadow=version is v2,
                    )
                )
    assert slack.slash("compare ticket-router v1 v2 n=3 from=pilot").status == 200
    header = emulator.wait_for(lambda: channel_message(emulator, "of ticket-router:"), what="the header")
    assert "3 recent pilot messages" in header["text"]
    emulator.wait_for(lambda: "started in" in said(emulator), what="the owner told")
    with session_scope(engine) as session:
        (started,) = session.exec(select(Comparison)).all()
        inputs = sorted(item.input_text for item in abtests.items(session, started.id))
        asked = session.exec(select(Prediction).where(Prediction.message_ts.startswith("ab:"))).all()  # type: ignore[attr-defined]
    assert inputs == sorted(texts) and started.source == "pilot" and started.votes_needed == 2
    assert len(asked) == 6 and {p.status for p in asked} == {PredictionStatus.QUEUED}
    assert queue(PREDICT_QUEUE, Redis.from_url(settings.redis_url)).count == 6  # put on the queue
