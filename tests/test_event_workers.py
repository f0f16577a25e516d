"""Event workers (bot/handoff.py): the web process acknowledges events, event workers do their work.

* a real `ftbot serve --event-workers 1`: reactions and a thread reply become an example and votes,
  every event handed over (the web process's counter), a redelivery dropped, and the worker stopped
  with the server;
* in process: events handed to a worker thread; with no worker alive they run in the web process;
  ids queued for a worker that died are taken back by the sweeper; a Redis that refuses the push
  leaves the event to the web process, once;
* the live tally's throttle shared by two processes: refreshes never overlap, are an interval apart,
  skip what is already shown, and the last change is always shown;
* an event worker's commits do not wait for the disk (PostgreSQL), and stay so across the pool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import make_server

import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot import handoff, inbox
from bot.app import build_app
from bot.handoff import EventWorker, Handoff, doorbell_client
from bot.http import FtbotRequestHandler
from bot.tally import SharedThrottle
from runner.core.config import Settings
from runner.core.db import commit_without_waiting_for_disk, make_engine, session_scope
from runner.core.models import EventStatus, ProcessedEvent, Vote
from runner.data import projects
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, _QuietHandler, _ThreadingWSGIServer
from tests.slack_client import SlackPeople
from tests.slack_emulator import SlackEmulator
from tests.test_cli import FTBOT, ROOT, SLACK_VARS, _free_port
from tests.training_support import wait_until

CHANNEL = "CDATA"


def seed(engine: Engine, emulator: SlackEmulator) -> tuple[str, dict[str, str]]:
    """A project whose root message is in the emulator: (root ts, label → emoji)."""
    root = emulator.post_user_message(CHANNEL, "Dataset ticket-router", "UOWNER")
    with session_scope(engine) as session:
        spec = projects.ProjectSpec(
            name="ticket-router",
            task_type="classification",
            label_lines="billing\ntechnical",
            reviewers=["UALICE", "UBOB"],
            instructions="Route the ticket.",
        )
        project = projects.create_project(session, spec, owner_id="UOWNER", channel_id=CHANNEL)
        project.root_ts = root["ts"]
        session.add(project)
        session.flush()
        legend = {label: emoji for emoji, label in projects.legend(project).items()}
    return root["ts"], legend


def votes(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return sorted((v.reviewer_id, v.value) for v in session.exec(select(Vote)).all())


def event_row(engine: Engine, event_id: str) -> ProcessedEvent | None:
    with Session(engine) as session:
        return session.get(ProcessedEvent, event_id)


def wait_done(engine: Engine, event_id: str) -> ProcessedEvent:
    """The event's row once it is marked done."""
    return wait_until(
        lambda: (r := event_row(engine, event_id)) is not None and r.status == EventStatus.DONE and r,
        timeout=30,
        what=f"{event_id} marked done",
    )


def silent_worker(settings: Settings, engine: Engine) -> EventWorker:
    """A worker that announced itself once and takes nothing (as one that died since would)."""
    worker = EventWorker(
        build_app(settings, engine, socket_mode=True), engine, Redis.from_url(settings.redis_url)
    )
    worker.beat()
    return worker


def handed_over(metrics_url: str) -> float:
    """The web process's count of events handed to event workers, from GET /metrics."""
    scraped = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    for line in scraped.splitlines():
        if line.startswith("ftbot_events_handed_over_total "):
            return float(line.split()[1])
    raise AssertionError("no ftbot_events_handed_over_total in /metrics")


# --- the real server --------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_with_an_event_worker_acks_events_and_the_worker_records_them_once(
    tmp_path, engine, database_url, emulator, redis_url
):
    root_ts, emoji = seed(engine, emulator)
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if k not in SLACK_VARS}
    server = subprocess.Popen(
        [*FTBOT, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"]
        + ["--event-workers", "1"],
        env={
            **base,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": emulator.base_url,
            "DATABASE_URL": database_url,
            "FTBOT_DATA_DIR": str(tmp_path / "data"),
            "REDIS_URL": redis_url,
        },
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    redis = Redis.from_url(redis_url)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: redis.zcard(handoff.WORKERS) == 1, timeout=120, what="the event worker")

        def answering() -> bool:
            try:
                return urllib.request.urlopen(url + "/healthz", timeout=5).status == 200
            except OSError:
                return False

        wait_until(answering, timeout=120, what="the web process")

        def events_go_to_workers() -> bool:
            details = json.loads(urllib.request.urlopen(url + "/healthz/details", timeout=5).read())
            return bool(details["events"] == "event workers")

        # The web process asks Redis at most once a second: it may have looked before the worker's
        # first heartbeat (and run events itself meanwhile, as it should).
        wait_until(events_go_to_workers, timeout=30, what="the web process to see the worker")
        slack = SlackPeople(url + "/slack/events", SIGNING_SECRET, emulator)
        reply = slack.reply(CHANNEL, root_ts, "I was charged twice for one order", "UCAROL")
        assert slack.react(CHANNEL, reply["ts"], emoji["billing"], "UALICE", event_id="EvW1").status == 200
        assert slack.react(CHANNEL, reply["ts"], emoji["technical"], "UBOB", event_id="EvW2").status == 200
        wait_until(
            lambda: votes(engine) == [("UALICE", "billing"), ("UBOB", "technical")],
            timeout=60,
            what="the votes, recorded by the event worker",
        )
        assert handed_over(url + "/metrics") == 3, "the reply and both reactions went to the worker"
        wait_until(
            lambda: all(
                (row := event_row(engine, e)) is not None and row.status == EventStatus.DONE
                for e in ("EvW1", "EvW2")
            ),
            timeout=30,
            what="the events marked done",
        )

        # A redelivery of an event already received is acknowledged and dropped, here as before.
        retry = slack.react(CHANNEL, reply["ts"], emoji["billing"], "UALICE", event_id="EvW1")
        assert retry.status == 200
        assert handed_over(url + "/metrics") == 3
        assert votes(engine) == [("UALICE", "billing"), ("UBOB", "technical")]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert redis.zcard(handoff.WORKERS) == 0, "the worker stopped with the server and said so"


# --- in process ---------------------------------------------------------------------------------------


@dataclass
class Web:
    """ftbot's WSGI handler with a `Handoff` (checked on every request), served on a local port."""

    slack: SlackPeople
    handler: FtbotRequestHandler
    handoff: Handoff
    server: _ThreadingWSGIServer


@pytest.fixture
def web(settings: Settings, engine: Engine, emulator: SlackEmulator) -> Iterator[Web]:
    app = build_app(settings, engine)
    door = Handoff(doorbell_client(settings.redis_url), settings.ftbot_event_worker_ttl, check_every=0.0)
    handler = FtbotRequestHandler(app, engine, settings=settings, handoff=door)
    server = make_server(
        "127.0.0.1", 0, handler, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/slack/events"
    yield Web(SlackPeople(url, SIGNING_SECRET, emulator), handler, door, server)
    server.shutdown()
    server.server_close()
    app.listener_runner.listener_executor.shutdown(wait=True)


class WorkerThread:
    """An `EventWorker` with its own Bolt app (as `ftbot event-worker` builds it), on a thread."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        app = build_app(settings, engine, socket_mode=True)
        self.worker = EventWorker(app, engine, Redis.from_url(settings.redis_url))
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self) -> EventWorker:
        self.thread.start()
        wait_until(lambda: self.worker.redis.zcard(handoff.WORKERS) >= 1, timeout=30, what="a heartbeat")
        return self.worker

    def __exit__(self, *_: Any) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_events_go_to_a_live_worker_and_come_back_to_the_web_process_when_none_is_left(
    web, settings, engine, emulator
):
    root_ts, emoji = seed(engine, emulator)
    with WorkerThread(settings, engine) as worker:
        reply = web.slack.reply(CHANNEL, root_ts, "The parcel never arrived", "UCAROL")
        assert web.slack.react(CHANNEL, reply["ts"], emoji["billing"], "UALICE").status == 200
        wait_until(lambda: votes(engine) == [("UALICE", "billing")], timeout=30, what="the worker's vote")
        assert worker.handled == 2, "the reply and the reaction ran on the worker"
    assert web.handoff.redis.zcard(handoff.WORKERS) == 0

    # No worker alive: the web process runs the event itself, as with no workers at all.
    assert web.slack.react(CHANNEL, reply["ts"], emoji["technical"], "UBOB").status == 200
    wait_until(
        lambda: votes(engine) == [("UALICE", "billing"), ("UBOB", "technical")],
        timeout=30,
        what="the vote counted by the web process",
    )
    assert worker.handled == 2 and web.handoff.redis.llen(handoff.QUEUE) == 0


def test_ids_queued_for_a_worker_that_died_are_taken_back_by_the_sweeper(web, settings, engine, emulator):
    root_ts, emoji = seed(engine, emulator)
    reply = emulator.post_user_message(CHANNEL, "Refund please", "UCAROL", thread_ts=root_ts)
    # A worker announced itself, then died without a word (its heartbeat still counts).
    dead = silent_worker(settings, engine)
    assert (
        web.slack.react(CHANNEL, reply["ts"], emoji["billing"], "UALICE", event_id="EvORPHAN1").status == 200
    )
    assert web.handoff.redis.lrange(handoff.QUEUE, 0, -1) == [b"EvORPHAN1"]
    assert votes(engine) == []

    # Its heartbeat runs out: the web process's sweeper takes the id back and runs the event.
    web.handoff.redis.zrem(handoff.WORKERS, dead.id)
    sweeper = inbox.Sweeper(web.handler.app, engine, settings, take_back=web.handoff.take_back)
    sweeper.start()
    try:
        wait_until(lambda: votes(engine) == [("UALICE", "billing")], timeout=30, what="the orphan's vote")
    finally:
        sweeper.stop()
        sweeper.join(timeout=30)
    row = wait_done(engine, "EvORPHAN1")
    assert row.attempts == 2 and web.handoff.redis.llen(handoff.QUEUE) == 0


def test_an_event_redis_would_not_queue_runs_in_the_web_process_once(web, settings, engine, emulator):
    root_ts, emoji = seed(engine, emulator)
    reply = emulator.post_user_message(CHANNEL, "Login fails", "UCAROL", thread_ts=root_ts)
    redis = web.handoff.redis
    with WorkerThread(settings, engine) as worker:
        redis.set(handoff.QUEUE, "not a list")  # LPUSH now answers WRONGTYPE
        assert (
            web.slack.react(CHANNEL, reply["ts"], emoji["technical"], "UALICE", event_id="EvNOPUSH").status
            == 200
        )
        wait_until(lambda: votes(engine) == [("UALICE", "technical")], timeout=30, what="the vote")
        row = wait_done(engine, "EvNOPUSH")
        assert row.attempts == 1, "run here as its first delivery, not dropped as a redelivery"
        assert worker.handled == 0
        redis.delete(handoff.QUEUE)


def test_an_event_body_is_stored_without_nul_characters_before_it_is_handed_over(
    web, settings, engine, emulator
):
    root_ts, _ = seed(engine, emulator)
    silent_worker(settings, engine)  # alive, but taking nothing: the event stays pending, as stored
    event = {"type": "message", "channel": CHANNEL, "user": "UCAROL", "text": "two\x00parcels"}
    event.update(ts="1700000099.000100", thread_ts=root_ts)
    assert web.slack.event(event, event_id="EvNUL").status == 200
    row = event_row(engine, "EvNUL")
    assert row is not None and row.status == EventStatus.PENDING
    assert row.body["event"]["text"] == "twoparcels"
    assert web.handoff.redis.lrange(handoff.QUEUE, 0, -1) == [b"EvNUL"]


# --- the tally's throttle across processes -----------------------------------------------------------


def test_the_tally_throttle_shared_by_two_processes_never_overlaps_and_shows_the_last_change(redis_url):
    interval = 0.2
    runs: list[tuple[float, float, int]] = []  # (start, end, changes counted before it)
    changes = 0
    lock = threading.Lock()

    def refresh(_key: int) -> None:
        with lock:
            seen = changes
        start = time.monotonic()
        time.sleep(0.02)  # a Slack call
        runs.append((start, time.monotonic(), seen))

    one, two = (SharedThrottle(refresh, interval, Redis.from_url(redis_url)) for _ in range(2))
    one.touch(7)
    wait_until(lambda: len(runs) == 1, timeout=10, what="the first change shown at once")
    for n in range(40):  # a burst of changes, from both processes
        with lock:
            changes += 1
        (one if n % 2 else two).touch(7)
        time.sleep(0.01)
    wait_until(lambda: runs and runs[-1][2] == changes, timeout=10, what="the last change shown")
    for (_, end, _), (start, _, _) in zip(runs, runs[1:], strict=False):
        assert start >= end + interval * 0.9, "an interval between refreshes, across both processes"
    burst = runs[-1][1] - runs[1][0]
    assert len(runs) - 1 <= burst / interval + 1


def test_a_shared_refresh_that_touches_its_own_key_gets_a_trailing_run_instead_of_a_deadlock(redis_url):
    runs: list[int] = []
    second = threading.Event()

    def action(key: int) -> None:
        runs.append(key)
        if len(runs) == 1:
            throttle.touch(key)  # more to do: it runs on this very thread, under the Redis lock
        else:
            second.set()

    throttle = SharedThrottle(action, 0.05, Redis.from_url(redis_url))
    first = threading.Thread(target=throttle.touch, args=(7,), daemon=True)
    first.start()
    first.join(timeout=30)
    assert not first.is_alive(), "the refresh deadlocked on its own touch"
    assert second.wait(timeout=30) and runs == [7, 7]


class CountingRedis(Redis):
    """A real client that counts the refresh locks it is asked for."""

    asked = 0

    def lock(self, *args: Any, **kwargs: Any) -> Any:
        self.asked += 1
        return super().lock(*args, **kwargs)


def test_the_tally_throttle_works_alone_when_redis_is_away():
    shown: list[int] = []
    away = CountingRedis(port=_free_port(), socket_connect_timeout=0.2)
    throttle = SharedThrottle(shown.append, 0.05, away)
    throttle.touch(3)
    wait_until(lambda: shown == [3], timeout=10, what="the refresh without Redis")
    throttle.touch(4)
    wait_until(lambda: shown == [3, 4], timeout=10, what="the next refresh")
    assert away.asked == 1, "after a failure the process throttles alone for a while, not asking again"


# --- event workers' commits -----------------------------------------------------------------------------


def test_an_event_workers_commits_do_not_wait_for_the_disk_on_postgresql(pg_engine):
    schema = _schema(pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    worker_engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    commit_without_waiting_for_disk(worker_engine)
    try:
        for _ in range(2):  # the second checkout reuses the pooled connection, rolled back on return
            with worker_engine.connect() as conn:
                assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "off"
                conn.rollback()
        with pg_engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on", "others unchanged"
    finally:
        worker_engine.dispose()


def _schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT current_schema()")).scalar_one())
