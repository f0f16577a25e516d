"""Events survive a bot process killed between the ack and the end of the listener (bot/inbox.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot import inbox
from runner.core.config import Settings
from runner.core.db import make_engine, upgrade
from runner.core.models import EventStatus, ProcessedEvent, Vote
from runner.data import projects
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.slack_client import SlackPeople
from tests.test_cli import FTBOT, ROOT, SLACK_VARS, _free_port
from tests.training_support import wait_until


def start_server(
    data_dir: Path, emulator: Any, redis_url: str, **env: str
) -> tuple[subprocess.Popen[str], str]:
    """A real `ftbot serve` (gunicorn master and worker in a process group of their own)."""
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if k not in SLACK_VARS}
    server = subprocess.Popen(
        [*FTBOT, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"],
        env={
            **base,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": emulator.base_url,
            "FTBOT_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            **env,
        },
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    for line in server.stdout:  # gunicorn logs "Booting worker" once it accepts requests
        if "Booting worker" in line:
            break
    else:
        raise AssertionError(f"ftbot serve exited with {server.wait()}")
    return server, f"http://127.0.0.1:{port}/slack/events"


def kill_hard(server: subprocess.Popen[str]) -> None:
    """SIGKILL the whole server at once, as the OOM killer or a lost host would."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


@pytest.mark.slow
def test_a_reaction_interrupted_by_a_crash_is_replayed_once_after_restart(tmp_path, emulator, redis_url):
    data_dir = tmp_path / "data"
    engine = make_engine(Settings(ftbot_data_dir=data_dir).sqlalchemy_url)
    upgrade(engine)
    root = emulator.post_user_message("CDATA", "Dataset ticket-router", "UOWNER")
    reply = emulator.post_user_message("CDATA", "I was charged twice", "UCAROL", thread_ts=root["ts"])
    with Session(engine, expire_on_commit=False) as session:
        spec = projects.ProjectSpec(
            name="ticket-router",
            task_type="classification",
            label_lines="billing\ntechnical",
            reviewers=["UALICE", "UBOB"],
            instructions="Route the ticket.",
        )
        project = projects.create_project(session, spec, owner_id="UOWNER", channel_id="CDATA")
        project.root_ts = root["ts"]
        session.add(project)
        session.commit()
        emoji = next(e for e, label in projects.legend(project).items() if label == "billing")

    def votes() -> list[Vote]:
        with Session(engine) as session:
            return list(session.exec(select(Vote)).all())

    def event_row() -> ProcessedEvent | None:
        with Session(engine) as session:
            return session.get(ProcessedEvent, "EvCRASH0001")

    # The reaction arrives before the reply's message event, so the listener reads the thread from
    # Slack first; Slack is slow to answer, and the process dies while the listener waits.
    release = emulator.hold_next("conversations.replies")
    server, url = start_server(data_dir, emulator, redis_url)
    try:
        slack = SlackPeople(url, SIGNING_SECRET, emulator)
        assert slack.react("CDATA", reply["ts"], emoji, "UALICE", event_id="EvCRASH0001").status == 200
        emulator.wait_for(lambda: "conversations.replies" in emulator.held, what="the listener's Slack call")
    finally:
        kill_hard(server)
    release.set()
    row = event_row()
    assert row is not None and row.status == EventStatus.PENDING and row.attempts == 1
    assert votes() == [], "the listener never got past its Slack call"

    # Slack does not redeliver an acknowledged event: only the replay after a restart can count the vote.
    server, url = start_server(data_dir, emulator, redis_url, FTBOT_EVENT_REPLAY_AFTER="0")
    try:
        emulator.wait_for(
            lambda: (row := event_row()) is not None and row.status == EventStatus.DONE,
            what="the replayed event to finish",
        )
        row = event_row()
        assert row is not None and row.attempts == 2 and row.body is None, "done: only the id is kept"
        assert [(v.reviewer_id, v.value) for v in votes()] == [("UALICE", "billing")]

        # A late retry of the same delivery from Slack is still dropped as a duplicate.
        slack = SlackPeople(url, SIGNING_SECRET, emulator)
        replies_before = len(emulator.calls_to("conversations.replies"))
        assert slack.react("CDATA", reply["ts"], emoji, "UALICE", event_id="EvCRASH0001").status == 200
        row = event_row()
        assert row is not None and row.attempts == 2 and row.status == EventStatus.DONE
        assert len(emulator.calls_to("conversations.replies")) == replies_before
        assert len(votes()) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_a_listener_that_raises_leaves_its_event_failed_and_replays_stop_after_the_attempts(
    bot, engine, settings
):
    # A thread reply without its channel (malformed): the message listener raises a KeyError.
    event = {"type": "message", "user": "UALICE", "text": "hi", "ts": "1700000001.000200"}
    event["thread_ts"] = "1700000000.000100"
    assert bot.slack.event(event, event_id="EvBROKEN001").status == 200

    def row() -> ProcessedEvent | None:
        with Session(engine) as session:
            return session.get(ProcessedEvent, "EvBROKEN001")

    failed = wait_until(
        lambda: (r := row()) is not None and r.status == EventStatus.FAILED and r,
        timeout=15,
        what="the event to be marked failed",
    )
    assert (
        failed.attempts == 1
        and failed.error.startswith("KeyError")
        and failed.body["event_id"] == "EvBROKEN001"
    )

    due_now = settings.model_copy(update={"ftbot_event_replay_after": 0.0, "ftbot_event_attempts": 3})
    for attempt in (2, 3):
        assert inbox.replay_due(bot.app, engine, due_now) == 1
        wait_until(
            lambda attempt=attempt: (
                (r := row()) is not None and r.attempts == attempt and r.status == EventStatus.FAILED
            ),
            timeout=15,
            what=f"replay {attempt} to fail too",
        )
    assert inbox.replay_due(bot.app, engine, due_now) == 0, "three deliveries in all, then it stays failed"
    assert bot.slack.event(event, event_id="EvBROKEN001", retry_num=1).status == 200
    assert row().attempts == 3, "a redelivery from Slack is still a duplicate"
