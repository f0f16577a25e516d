"""The pilot loop end to end, through signed requests and a real predict worker:

promote v1 → pilot on → messages arrive → the predict worker posts suggestions → reviewers accept or
correct them with reactions (duplicates and retractions included) → acceptance as computed by hand →
v2, worse on live traffic, is promoted → the drift alert, mentioning on-call, with a Rollback button
and, in its thread, the chart the predict worker drew → on-call presses it → production is back on v1
and the alert is resolved.

Predictions come from a fake OpenAI-compatible server (``FTBOT_INFERENCE_URL``), so what each version
answers is known in advance; everything else is the product's own path. Nothing waits on time: each
step waits for the event it sent to be handled or for the Slack call it expects.
"""

from __future__ import annotations

import json
import struct
import urllib.request

import pytest
from redis import Redis
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import AlertStatus, Deployment, DriftAlert, Prediction
from runner.data import acceptance, projects
from runner.jobs import queues
from runner.jobs.alerts import post_alert_chart
from runner.registry import pilot, versions
from tests.fake_openai import FakeInferenceServer
from tests.pilot_support import (
    LEGEND,
    PROJECT,
    TRUTH,
    deliver_message,
    make_project,
    react,
    right_label,
    say,
    settled,
    suggestion,
)
from tests.registry_support import post_summary
from tests.slack_client import buttons
from tests.training_support import run_worker_burst, wait_until

WRONG = {"billing": "shipping", "technical": "account", "account": "billing", "shipping": "technical"}
V1_TICKETS = [
    "the invoice shows the wrong amount",
    "the app crashes when I log in",
    "I forgot my password",
    "my parcel never came",
    "a second invoice arrived",
    "another crash after the update",
    "password reset link is broken",
    "the parcel is damaged",
    "invoice for March is missing",
    "my parcel went to the wrong door",  # v1 gets this one wrong
]
V2_TICKETS = [f"{word} problem number {i}" for i, word in enumerate(list(TRUTH) * 3)]  # 12 tickets
V2_RIGHT = {i for i in range(len(V2_TICKETS)) if i % 3 == 2}  # v2 gets one in three right
CHART_JOB = "ftbot-alert-chart-1"


def oracle(model: str, messages: list[dict[str, str]]) -> tuple[str, float] | None:
    text = messages[-1]["content"]
    truth = right_label(text)
    if model == f"{PROJECT}-v1":
        return (WRONG[truth] if text == V1_TICKETS[-1] else truth), 0.92
    if model == f"{PROJECT}-v2":
        return (truth if V2_TICKETS.index(text) in V2_RIGHT else WRONG[truth]), 0.81
    return None


def production(engine) -> int | None:
    with session_scope(engine) as session:
        current = versions.production(session, projects.get_project(session, PROJECT))
        return current.number if current else None


def channel_message(emulator, channel: str, words: str):
    return next((m for m in emulator.messages(channel) if words in m.get("text", "")), None)


def summary(emulator, number: int):
    return channel_message(emulator, "CGENERAL", f"Evaluation of {PROJECT} v{number}:")


def promote(slack, emulator, engine, settings, number: int) -> None:
    post_summary(engine, settings, number)
    posted = emulator.wait_for(lambda: summary(emulator, number), what=f"the summary of v{number}")
    slack.press(posted, f"Promote v{number}", user="UALICE")
    # (conditions waited on read the emulator only: a database read there could wait on a transaction
    # that waits on the emulator)
    emulator.wait_for(lambda: channel_message(emulator, "CGENERAL", f"v{number} is in production"))
    assert production(engine) == number


def pilot_messages(slack, emulator, engine, settings, database_url, texts: list[str]) -> list[dict]:
    """People post `texts` in the pilot channel; the predict worker answers; the suggestions appear."""
    messages = []
    for text in texts:
        message = say(slack, "CPILOT", text)
        settled(engine, f"Ev{message['ts'].replace('.', '')}")
        messages.append(message)
    run_worker_burst(settings, database_url, emulator, queues="predict")
    return [
        emulator.wait_for(lambda m=m: suggestion(emulator, "CPILOT", m["ts"]), what="a suggestion")
        for m in messages
    ]


def review(slack, engine, shown: dict, text: str, version_says, reviewer: str = "UBOB") -> bool:
    """`reviewer` accepts a right suggestion with ✅ or corrects a wrong one with the right label's emoji."""
    right = right_label(text) == version_says
    emoji = "white_check_mark" if right else LEGEND[right_label(text)]
    react(slack, engine, "CPILOT", shown["ts"], emoji, reviewer)
    return right


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pilot_reviews_drift_alert_and_rollback(bot, slack, emulator, engine, settings, database_url):
    emulator.add_channel("CPILOT", "support")
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL", "UERIN"])
    settings.ftbot_oncall = ("SONCALL",)
    settings.ftbot_base_model = "tiny"  # the versions' base model; the server serves their adapters
    make_project(engine, settings, count=2, reviewers=("UBOB", "UCAROL"))
    server = FakeInferenceServer(oracle).__enter__()
    settings.ftbot_inference_url = server.url
    try:
        promote(slack, emulator, engine, settings, 1)
        assert slack.slash("pilot ticket-router on <#CPILOT|support>").status == 200
        emulator.wait_for(lambda: channel_message(emulator, "CPILOT", "turned on the pilot"), what="pilot on")

        # --- v1 in production: ten messages, one of them delivered twice ----------------------------
        shown = pilot_messages(slack, emulator, engine, settings, database_url, V1_TICKETS)
        settled(engine, deliver_message(slack, "CPILOT", {**emulator.messages("CPILOT")[1], "user": "UDAVE"}))
        assert all(s["text"].startswith(f"Suggestion from {PROJECT} v1: ") for s in shown)
        accepted_v1 = 0
        for i, (text, posted) in enumerate(zip(V1_TICKETS, shown, strict=True)):
            says = oracle(f"{PROJECT}-v1", [{"content": text}])[0]  # type: ignore[index]
            if i == 2:  # UCAROL accepts, takes it back, and UBOB accepts it instead
                event = react(slack, engine, "CPILOT", posted["ts"], "white_check_mark", "UCAROL")
                react(slack, engine, "CPILOT", posted["ts"], "white_check_mark", "UCAROL", event_id=event)
                react(slack, engine, "CPILOT", posted["ts"], "white_check_mark", "UCAROL", added=False)
            accepted_v1 += review(slack, engine, posted, text, says)
        react(slack, engine, "CPILOT", shown[0]["ts"], "white_check_mark", "UBOB")  # the same ✅ again
        assert accepted_v1 == 9  # by hand: v1 is wrong on the last ticket only
        assert not any("Acceptance of" in m.get("text", "") for m in emulator.messages("CPILOT"))

        # --- v2, just as good offline, is promoted; live it is right one time in three --------------
        promote(slack, emulator, engine, settings, 2)
        shown = pilot_messages(slack, emulator, engine, settings, database_url, V2_TICKETS)
        assert all(s["text"].startswith(f"Suggestion from {PROJECT} v2: ") for s in shown)
        outcomes_v2 = []
        for text, posted in zip(V2_TICKETS, shown, strict=True):
            says = oracle(f"{PROJECT}-v2", [{"content": text}])[0]  # type: ignore[index]
            outcomes_v2.append(review(slack, engine, posted, text, says))
        assert outcomes_v2 == [i in V2_RIGHT for i in range(12)] and sum(outcomes_v2) == 4

        alert = emulator.wait_for(
            lambda: channel_message(emulator, "CPILOT", f"Acceptance of {PROJECT} v2 dropped"),
            what="the alert",
        )
        # its chart: the bot enqueues it (it has no plotting); the predict worker draws and uploads it
        chart_job = wait_until(lambda: queues.fetch_job(Redis.from_url(settings.redis_url), CHART_JOB))
        assert chart_job.origin == "predict"
        run_worker_burst(settings, database_url, emulator, queues="predict")
    finally:
        server.__exit__(None, None, None)

    (chart,) = emulator.uploaded_files()
    assert (chart.channels, chart.thread_ts, chart.filename) == (["CPILOT"], alert["ts"], "acceptance.png")
    assert chart.title == f"Acceptance of {PROJECT} v2: 3 of 10 accepted"
    assert chart.content is not None and chart.content.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", chart.content[16:24])
    assert (width, height) == (800, 600)
    assert post_alert_chart(settings, engine, 1) == {"alert_id": 1, "uploaded": False}  # once per alert
    assert len(emulator.uploaded_files()) == 1

    # The test fires once it has seen enough: by hand, S = max(0, S + llr) over the first ten reviews
    # (p0 = the offline accuracy, 0.8; p1 = 0.6) first reaches 3 at the tenth.
    p0, p1 = acceptance.baseline(0.8)
    by_hand = acceptance.cusum(outcomes_v2, p0=p0, p1=p1, min_reviews=10)
    assert by_hand.alarm_at == 10 and sum(outcomes_v2[:10]) == 3
    assert "<!subteam^SONCALL>" in alert["text"] and "3 of 10" in alert["text"]
    evidence_text = json.dumps(alert["blocks"])
    assert (
        "v1 before it: 90% accepted of 10" in evidence_text
        and "Offline eval accuracy of v2: 80%" in evidence_text
    )
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        v1, v2 = (versions.get_version(session, project, n) for n in (1, 2))
        live = {1: pilot.version_acceptance(session, v1), 2: pilot.version_acceptance(session, v2)}
        assert len(session.exec(select(Prediction)).all()) == 22  # the twice-delivered message once
        (raised,) = session.exec(select(DriftAlert)).all()
    assert raised.id == 1 and raised.chart_at is not None
    assert raised.evidence["series"] == [int(ok) for ok in outcomes_v2[:10]]
    assert (live[1].rate.accepted, live[1].rate.reviewed) == (9, 10)
    assert (live[2].rate.accepted, live[2].rate.reviewed) == (4, 12)
    assert live[2].rate.interval == acceptance.wilson(4, 12)
    assert raised.evidence["reviewed"] == 10 and raised.status == AlertStatus.OPEN

    # --- on-call rolls back from the alert -------------------------------------------------------
    assert "Rollback v2" in buttons(alert)
    slack.press(alert, "Rollback v2", user="UBOB", channel="CPILOT")  # not on call
    emulator.wait_for(
        lambda: any(e["user"] == "UBOB" and "on-call" in e["text"] for e in emulator.ephemerals())
    )
    assert production(engine) == 2
    slack.press(alert, "Rollback v2", user="UCAROL", channel="CPILOT")
    emulator.wait_for(
        lambda: channel_message(emulator, "CGENERAL", "rolled back ticket-router"), what="rollback"
    )
    resolved = emulator.wait_for(
        lambda: channel_message(emulator, "CPILOT", "Resolved: Acceptance of"), what="the alert resolved"
    )
    assert production(engine) == 1
    assert "Rollback v2" not in buttons(resolved) and "rolled back ticket-router: v2 → v1" in json.dumps(
        resolved, ensure_ascii=False
    )
    with session_scope(engine) as session:
        (raised,) = session.exec(select(DriftAlert)).all()
        last = session.exec(select(Deployment).order_by(Deployment.id.desc())).first()  # type: ignore[union-attr]
    assert raised.status == AlertStatus.RESOLVED
    assert last is not None and last.by == "UCAROL" and last.reason == "from the drift alert on v2"

    # --- what operators see: /metrics and App Home ---------------------------------------------------
    metrics = urllib.request.urlopen(bot.url + "/metrics", timeout=10).read().decode()
    assert 'ftbot_pilot_acceptance{project="ticket-router",version="v2"} 0.3333333333333333' in metrics
    assert 'ftbot_pilot_acceptance{project="ticket-router",version="v1"} 0.9' in metrics
    assert 'ftbot_drift_alerts{kind="acceptance",project="ticket-router",status="resolved"} 1.0' in metrics
    assert 'ftbot_prediction_latency_seconds{quantile="0.95",stage="suggestion"}' in metrics
    slack.event({"type": "app_home_opened", "user": "UALICE", "channel": "D1", "tab": "home"})
    home = emulator.wait_for(lambda: emulator.home_view("UALICE"), what="home")
    shown_home = json.dumps(home, ensure_ascii=False)
    assert "Pilot on in <#CPILOT>" in shown_home and "v2: 4/12 accepted (33%" in shown_home
