"""Cost and time preflight through the product: `/finetune train` (and the Train button) shows the
estimate with Confirm and Cancel and queues nothing; Confirm queues exactly one run however often it
is pressed; Cancel queues nothing; a run over the project's GPU-hour budget waits for an admin's
Approve; the estimate learns the throughput of the worker class a real training job ran on; and
`ftbot runs --json` puts each run's actual figures beside its estimate."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from sqlmodel import col, select

from runner.core import audit
from runner.core.db import session_scope
from runner.core.models import RequestStatus, RunStatus, TrainingRequest, TrainingRun, utcnow
from runner.data import projects
from runner.jobs import queues, runs
from runner.slack import payloads
from tests.slack_client import buttons
from tests.training_support import (
    FAST,
    ROOT,
    ask_to_train,
    seed_project,
    train_confirmed,
    wait_until,
    worker_env,
)


def all_runs(engine) -> list[TrainingRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(TrainingRun)).all())


def the_request(engine) -> TrainingRequest:
    with session_scope(engine) as session:
        found = session.exec(select(TrainingRequest).order_by(col(TrainingRequest.id).desc())).first()
        assert found is not None
        return found


def audit_rows(engine) -> list[tuple[str, str, bool, str]]:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        return [
            (e.user_id, e.action, e.allowed, e.detail) for e in audit.entries(session, project_id=project.id)
        ]


def told(emulator, user: str, words: str) -> dict[str, Any]:
    return emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == user and words in e["text"]), None),
        what=f"{user} told {words!r}",
    )


def current(emulator, ts: str) -> dict[str, Any]:
    return next(m for m in emulator.messages("CGENERAL") if m["ts"] == ts)


def labels(message: dict[str, Any]) -> list[str]:
    return list(buttons(message))


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def train_jobs(settings) -> list[str]:
    redis = Redis.from_url(settings.redis_url)
    names = ["train", *(f"train-{c.split(':')[0]}" for c in settings.ftbot_hardware_classes)]
    return [job for name in names for job in queues.queue(name, redis).job_ids]


def finished_run_this_month(engine, settings, *, gpu_hours: float) -> int:
    """A finished run of the project, requested this month, that took `gpu_hours` (its measured wall
    time, one process)."""
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        run = runs.create_run(
            session, settings=settings, project=project, overrides={"epochs": "1"}, requested_by="UALICE"
        )
        run.status = RunStatus.FINISHED
        run.metrics = {"wall_time_s": gpu_hours * 3600}  # no throughput: the estimates stay the default
        run.started_at, run.finished_at = utcnow() - timedelta(hours=gpu_hours), utcnow()
        session.add(run)
        session.flush()
        return run.id or 0


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_train_shows_the_estimate_and_confirm_queues_exactly_one_run(
    slack, emulator, engine, training_settings
):
    seed_project(engine, emulator=emulator)
    asked = ask_to_train(slack, emulator, "ticket-router epochs=1")
    blocks = shown(asked)
    for words in (
        " training examples",
        "*Tokens*\\n",
        "(1 epoch)",
        "*Time*\\n~",
        "*GPU-hours* (worker-hours on CPU)",
        "MiB per process",  # the tiny model's config.json is on disk
        "*Hardware*\\nany worker · queue `train`",
        "tokens/s (default)",
        "Nothing is queued until it is confirmed",
    ):
        assert words in blocks, words
    assert labels(asked) == ["Confirm", "Cancel"]
    assert asked["thread_ts"]  # in the project's thread, where the run will report
    assert all_runs(engine) == [] and train_jobs(training_settings) == []

    # Not who asked, not the owner: refused, audited, nothing queued.
    assert slack.press(asked, "Confirm", user="UBOB").status == 200
    assert "may confirm this training of *ticket-router*" in told(emulator, "UBOB", "Only")["text"]
    assert all_runs(engine) == []

    # A double click: both presses reach the bot at once; one run, one job.
    presses = [threading.Thread(target=slack.press, args=(asked, "Confirm")) for _ in range(2)]
    for press in presses:
        press.start()
    for press in presses:
        press.join()
    status = emulator.wait_for(  # posted once the run is committed and enqueued
        lambda: (m := current(emulator, asked["ts"]))["text"].startswith("Training run ") and m,
        what="the estimate to become the run's status message",
    )
    again = told(emulator, "UALICE", "confirmed already")
    (run,) = all_runs(engine)
    assert status["text"].startswith(f"Training run {run.id} of ticket-router: queued")
    assert f"{run.estimate['tokens']:,} tokens" in shown(status)
    assert f"it is run {run.id}" in again["text"]
    assert train_jobs(training_settings) == [queues.train_job_id(run.id)]
    redis = Redis.from_url(training_settings.redis_url)
    evaluation = wait_until(  # queued right after the training job, which may be a moment later
        lambda: queues.fetch_job(redis, queues.eval_job_id(run.id)), what="the evaluation job"
    )
    assert evaluation is not None and evaluation.get_status() == "deferred"  # after the training
    request = the_request(engine)
    assert (request.status, request.run_id, request.decided_by) == (RequestStatus.CONFIRMED, run.id, "UALICE")
    assert run.estimate == request.estimate and run.snapshot_id == request.snapshot_id  # what was shown
    rows = [(user, action, allowed) for user, action, allowed, _ in audit_rows(engine)]
    assert sorted(rows) == [
        ("UALICE", "confirm", True),
        ("UALICE", "confirm", True),  # the second press: audited, not done
        ("UALICE", "train", True),
        ("UBOB", "confirm", False),
    ]
    details = sorted(d for user, action, allowed, d in audit_rows(engine) if action == "confirm" and allowed)
    assert details[0].startswith("not done: This training was confirmed already")
    assert details[1].startswith(f"run {run.id}, estimate ")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_train_button_then_cancel_queues_nothing(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    assert slack.slash("status ticket-router", user="UALICE").status == 200
    status = told(emulator, "UALICE", "ticket-router")
    waiting = len(emulator.messages("CGENERAL"))
    assert slack.press(status, "Train", user="UALICE").status == 200
    asked = emulator.wait_for(
        lambda: next(
            (
                m
                for m in emulator.messages("CGENERAL")[waiting:]
                if m["text"].startswith("Train ticket-router?")
            ),
            None,
        ),
        what="the estimate",
    )
    assert labels(asked) == ["Confirm", "Cancel"]
    assert "epochs, auto)" in shown(asked)  # no epochs asked for: the rule chooses them

    assert slack.press(asked, "Cancel", user="UALICE").status == 200
    cancelled = emulator.wait_for(
        lambda: (m := current(emulator, asked["ts"]))["text"].startswith("Training of") and m,
        what="cancelled",
    )
    assert "cancelled by <@UALICE>" in cancelled["text"] and "blocks" in cancelled
    assert labels(cancelled) == []
    assert the_request(engine).status == RequestStatus.CANCELLED

    # The Confirm of the message as it was before (a stale client): refused, nothing queued.
    assert slack.press(asked, "Confirm", user="UALICE").status == 200
    assert "nothing was queued" in told(emulator, "UALICE", "was cancelled")["text"]
    assert all_runs(engine) == [] and train_jobs(training_settings) == []
    assert ("UALICE", "cancel", True) in [(u, a, ok) for u, a, ok, _ in audit_rows(engine)]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_a_run_over_the_budget_waits_for_an_admins_approval(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_admins = ("UCAROL",)
    training_settings.ftbot_budget_gpu_hours = 2.0
    earlier = finished_run_this_month(engine, training_settings, gpu_hours=1.0)

    # Within the budget: Confirm, with what the month has used.
    within = ask_to_train(slack, emulator, "ticket-router epochs=1")
    assert labels(within) == ["Confirm", "Cancel"]
    assert "1.0 GPU-h used, 0 GPU-h queued or running" in shown(within) and "of 2.0 GPU-h" in shown(within)

    # The budget shrinks before anyone confirms: Confirm now says so and offers Approve instead.
    training_settings.ftbot_budget_gpu_hours = 1.0
    assert slack.press(within, "Confirm", user="UALICE").status == 200
    assert "an admin must approve it" in told(emulator, "UALICE", "would take *ticket-router*")["text"]
    redrawn = emulator.wait_for(
        lambda: (m := current(emulator, within["ts"])) and labels(m) == ["Approve", "Cancel"] and m,
        what="the estimate with Approve",
    )
    assert "Over the budget" in shown(redrawn) and "<@UCAROL>" in shown(redrawn)
    assert [r.id for r in all_runs(engine)] == [earlier]

    # The owner who asked is no admin: refused and audited.
    assert slack.press(redrawn, "Approve", user="UALICE").status == 200
    refusal = told(emulator, "UALICE", "Only an admin")
    assert "may approve over-budget training of *ticket-router*" in refusal["text"]
    assert [r.id for r in all_runs(engine)] == [earlier] and train_jobs(training_settings) == []

    # An admin approves: queued once, the approval on the run, in the audit log and on its message.
    assert slack.press(redrawn, "Approve", user="UCAROL").status == 200
    run_id = wait_until(
        lambda: next((r.id for r in all_runs(engine) if r.id != earlier), None), what="the run"
    )
    status = emulator.wait_for(  # posted once the run is committed and enqueued
        lambda: (m := current(emulator, within["ts"]))["text"].startswith(f"Training run {run_id}") and m,
        what="the run's status message",
    )
    run = next(r for r in all_runs(engine) if r.id == run_id)
    assert run.approved_by == "UCAROL" and run.requested_by == "UALICE"
    assert train_jobs(training_settings) == [queues.train_job_id(run_id)]
    assert "approved over the GPU-hour budget by <@UCAROL>" in shown(status)
    rows = audit_rows(engine)
    assert ("UALICE", "approve", False) in [(u, a, ok) for u, a, ok, _ in rows]
    approved = [d for u, a, ok, d in rows if (u, a, ok) == ("UCAROL", "approve", True)]
    assert len(approved) == 1 and approved[0].startswith(f"run {run_id}") and "approved" in approved[0]
    assert ("UALICE", "confirm", True) in [(u, a, ok) for u, a, ok, _ in rows]  # tried, not done

    # A new request now starts over the budget: Approve from the start, the queued run counted.
    over = ask_to_train(slack, emulator, "ticket-router epochs=1")
    assert labels(over) == ["Approve", "Cancel"]
    queued = payloads.gpu_hours(run.estimate["gpu_hours"])
    assert f"1.0 GPU-h used, {queued} queued or running" in shown(over)


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_estimate_learns_the_throughput_of_the_worker_class_a_run_trained_on(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_hardware_classes = ("cpu:0:0",)
    first = ask_to_train(slack, emulator, "ticket-router " + " ".join(FAST))
    assert "*Hardware*\\ncpu · queue `train-cpu`" in shown(first) and "(default)" in shown(first)
    assert slack.press(first, "Confirm").status == 200
    first_id = wait_until(lambda: next((r.id for r in all_runs(engine)), None), what="the first run")
    train_on_cpu_class(training_settings, database_url, emulator)
    done = next(r for r in all_runs(engine) if r.id == first_id)
    assert done.status == RunStatus.FINISHED, done.error
    assert done.hardware_class == "cpu"  # what the worker declared

    # The next estimate for the class uses what the class measured.
    second_id = train_confirmed(slack, emulator, "ticket-router " + " ".join(FAST))
    second = next(r for r in all_runs(engine) if r.id == second_id)
    assert second.estimate["throughput_source"] == "measured on cpu (1 run)"
    assert second.estimate["tokens_per_s"] == pytest.approx(done.metrics["tokens_per_s"], rel=1e-3)
    train_on_cpu_class(training_settings, database_url, emulator)

    # Another class has measured nothing yet: the default again.
    training_settings.ftbot_hardware_classes = ("cpu:0:0", "big:1:80G")
    elsewhere = ask_to_train(slack, emulator, "ticket-router epochs=1")
    assert "*Hardware*\\nbig · queue `train-big`" in shown(elsewhere) and "(default)" in shown(elsewhere)
    assert slack.press(elsewhere, "Cancel").status == 200

    listed = subprocess.run(
        [sys.executable, "-m", "bot.cli", "runs", "ticket-router", "--json"],
        env=worker_env(training_settings, database_url, emulator),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    measured = rows[second_id]
    assert measured["status"] == "finished" and measured["hardware_class"] == "cpu"
    assert measured["actual"]["tokens_per_s"] == second_run_metrics(engine, second_id)["tokens_per_s"]
    assert measured["estimate"]["throughput_source"] == "measured on cpu (1 run)"
    for key in ("seconds", "tokens", "tokens_per_s", "gpu_hours"):
        ratio = measured["actual_vs_estimate"][key]
        assert ratio == pytest.approx(measured["actual"][key] / measured["estimate"][key], rel=1e-2)


def second_run_metrics(engine, run_id: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None and run.metrics
        return run.metrics


def train_on_cpu_class(settings, database_url: str, emulator) -> None:
    """A burst worker declaring no GPUs: it serves the cpu class's train queue."""
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--gpus", "0", "--queues", "train-cpu", "--burst"],
        env={
            **worker_env(settings, database_url, emulator),
            "FTBOT_HARDWARE_CLASSES": ",".join(settings.ftbot_hardware_classes),
            "OMP_NUM_THREADS": "1",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "hardware class cpu" in done.stdout


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_cli_train_asks_unless_told_yes(engine, training_settings, database_url, emulator):
    seed_project(engine)
    env = {
        **worker_env(training_settings, database_url, emulator),
        "FTBOT_BUDGET_GPU_HOURS": "0.000001",  # any run is over it
    }
    env.pop("SLACK_BOT_TOKEN", None)
    command = [sys.executable, "-m", "bot.cli", "train", "ticket-router", "epochs=1"]
    declined = subprocess.run(
        command, env=env, cwd=ROOT, input="n\n", capture_output=True, text=True, timeout=120
    )
    assert declined.returncode == 1 and "Nothing was queued" in declined.stderr
    for row in ("examples", "tokens", "time", "GPU-hours", "memory", "hardware", "throughput", "budget"):
        assert f"\n  {row}" in declined.stdout, row
    assert "over the budget: confirming approves it as cli:" in declined.stdout
    assert all_runs(engine) == [] and the_request(engine).status == RequestStatus.CANCELLED

    scripted = subprocess.run(
        [*command, "--yes"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert scripted.returncode == 0, scripted.stderr
    (run,) = all_runs(engine)
    assert f"run {run.id} queued (job {queues.train_job_id(run.id)})" in scripted.stdout
    assert run.approved_by and run.approved_by.startswith("cli:")
    assert train_jobs(training_settings) == [queues.train_job_id(run.id)]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_who_asked_or_the_owner_confirms_not_another_trainer(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_trainers = ("UDAVE", "UERIN")
    asked = ask_to_train(slack, emulator, "ticket-router epochs=1", user="UDAVE")
    assert "<@UDAVE> asked for a run" in shown(asked)

    assert slack.press(asked, "Confirm", user="UERIN").status == 200  # a trainer, but not who asked
    refusal = told(emulator, "UERIN", "Only")
    assert "who started it or the project owner (<@UALICE>)" in refusal["text"]
    assert all_runs(engine) == []

    assert slack.press(asked, "Confirm", user="UALICE").status == 200  # the owner
    emulator.wait_for(
        lambda: current(emulator, asked["ts"])["text"].startswith("Training run "), what="the run"
    )
    (run,) = all_runs(engine)
    assert (run.requested_by, the_request(engine).decided_by) == ("UDAVE", "UALICE")
    rows = [(u, a, ok) for u, a, ok, _ in audit_rows(engine)]
    assert ("UERIN", "confirm", False) in rows and ("UALICE", "confirm", True) in rows
