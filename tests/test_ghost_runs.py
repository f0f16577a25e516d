"""No ghost runs and no half passes: a run Redis never took is failed and the person told; a run that
never reached Redis is failed by the reconciler of a real worker once its grace has passed; the
reconciler finishes its pass when Slack or the database fails it, and a later pass brings the
status messages up to date. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

from slack_sdk import WebClient
from sqlmodel import select

from runner.core import audit
from runner.core.db import session_scope
from runner.core.models import RunStatus, TrainingRun, utcnow
from runner.data import projects
from runner.jobs import runs
from runner.slack import notify
from tests.conftest import BOT_TOKEN, start_bot
from tests.faults import fail_updates, repair
from tests.training_support import ROOT, ask_to_train, seed_project, worker_env

CLOSED_PORT = "127.0.0.1:1"  # nothing listens there


def all_runs(engine) -> dict[int, TrainingRun]:
    with session_scope(engine) as session:
        return {run.id or 0: run for run in session.exec(select(TrainingRun)).all()}


def test_train_with_redis_down_fails_the_run_and_tells_the_person(engine, training_settings, emulator):
    seed_project(engine, emulator=emulator)
    down = training_settings.model_copy(update={"redis_url": f"redis://{CLOSED_PORT}/0"})
    bot = start_bot(down, engine, emulator)
    try:
        asked = ask_to_train(bot.slack, emulator, "ticket-router epochs=1")  # no Redis needed to ask
        assert bot.slack.press(asked, "Confirm", user="UALICE").status == 200
        told = emulator.wait_for(
            lambda: next((e for e in emulator.ephemerals() if e["user"] == "UALICE"), None), what="the answer"
        )
    finally:
        bot.stop()
    assert "job queue (Redis) could not take the run" in told["text"] and "Nothing will train" in told["text"]
    (run,) = all_runs(engine).values()
    assert run.status == RunStatus.FAILED and "Redis" in (run.error or "") and run.advice
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        rows = [(e.user_id, e.action, e.allowed) for e in audit.entries(session, project_id=project.id)]
    assert sorted(rows) == [("UALICE", "confirm", True), ("UALICE", "train", True)]
    failed = emulator.wait_for(  # the estimate became the run's status message, failed
        lambda: next((m for m in status_texts(emulator) if "failed" in m), None), what="the failed run"
    )
    assert "Redis" in failed


def make_runs(engine, settings, emulator, count: int) -> list[int]:
    """`count` runs recorded as queued (their status message posted) but never put on Redis, as
    when the process dies between the commit and the enqueue."""
    ids = []
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        for _ in range(count):
            run = runs.create_run(
                session, settings=settings, project=project, overrides={}, requested_by="UALICE"
            )
            ids.append(run.id or 0)
    client = WebClient(token=BOT_TOKEN, base_url=emulator.base_url)
    for run_id in ids:
        notify.run_status(engine, client, run_id)
    return ids


def age(engine, run_id: int, minutes: float, **changes) -> None:
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        run.created_at = utcnow() - timedelta(minutes=minutes)
        for name, value in changes.items():
            setattr(run, name, value)
        session.add(run)


def reconcile_with_a_worker(settings, database_url: str, emulator, **env: str) -> str:
    """A real `ftbot worker --burst`: it reconciles at start, finds no job and exits."""
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--burst", "--queues", "train"],
        env={**worker_env(settings, database_url, emulator), "FTBOT_ENQUEUE_TIMEOUT": "60", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def status_texts(emulator) -> list[str]:
    return [m["text"] for m in emulator.messages("CGENERAL") if m["text"].startswith("Training run")]


def test_runs_that_never_reached_redis_are_failed_after_their_grace(
    engine, training_settings, database_url, emulator
):
    seed_project(engine, emulator=emulator)
    stale, legacy, fresh = make_runs(engine, training_settings, emulator, 3)
    age(engine, stale, minutes=10)
    age(engine, legacy, minutes=10, rq_job_id=None)  # recorded before runs carried their job id
    reconcile_with_a_worker(training_settings, database_url, emulator)
    found = all_runs(engine)
    assert found[stale].status == found[legacy].status == RunStatus.FAILED
    assert "never reached the job queue" in (found[stale].error or "")
    assert found[fresh].status == RunStatus.QUEUED  # within its grace: its job may be on its way
    texts = status_texts(emulator)
    assert sum("failed" in t for t in texts) == 2 and sum("queued" in t for t in texts) == 1


def test_the_reconciler_finishes_its_pass_through_slack_and_database_faults(
    engine, training_settings, database_url, emulator
):
    seed_project(engine, emulator=emulator)
    blocked, other = make_runs(engine, training_settings, emulator, 2)
    for run_id in (blocked, other):
        age(engine, run_id, minutes=10)
    # Slack unreachable for the whole pass, and the database refusing one run's update.
    fail_updates(engine, "training_run", "status", f"OLD.id = {blocked}")
    try:
        output = reconcile_with_a_worker(
            training_settings, database_url, emulator, SLACK_API_URL=f"http://{CLOSED_PORT}/api/"
        )
    finally:
        repair(engine, "training_run")
    found = all_runs(engine)
    assert found[other].status == RunStatus.FAILED and found[blocked].status == RunStatus.QUEUED
    assert "could not reconcile a run" in output and "slack unreachable" in output
    assert all("queued" in t for t in status_texts(emulator))  # Slack never heard

    # Both back: the next pass fails the other run and brings both messages up to date.
    reconcile_with_a_worker(training_settings, database_url, emulator)
    found = all_runs(engine)
    assert found[blocked].status == RunStatus.FAILED
    assert [found[r].shown_status for r in (blocked, other)] == ["failed", "failed"]
    texts = status_texts(emulator)
    assert len(texts) == 2 and all("failed" in t for t in texts), json.dumps(texts)
