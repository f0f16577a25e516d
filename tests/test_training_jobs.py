"""Training jobs for real: Slack or the CLI enqueues on Redis, an `ftbot worker` subprocess trains the
tiny model with QLoRA on CPU, registers the version and reports in the project thread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import ModelVersion, RunStatus, TrainingRun, utcnow
from runner.data import projects
from runner.jobs import queues, reconcile, runs
from tests.training_support import (
    ENDLESS,
    FAST,
    ROOT,
    seed_project,
    start_worker,
    status_message,
    the_run,
    train_confirmed,
    wait_until,
)


def test_slack_train_runs_on_a_worker_and_registers_a_candidate(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(FAST))
    queued = emulator.wait_for(lambda: status_message(emulator), what="the run's status message")
    assert "queued" in queued["text"] and queued["thread_ts"] == the_run(engine).thread_ts
    assert "Cancel" in json.dumps(queued["blocks"])

    run = the_run(engine)
    stored = Redis.from_url(training_settings.redis_url).hget(f"rq:job:{queues.train_job_id(run.id)}", "data")
    func, _instance, args, kwargs = json.loads(zlib.decompress(stored))  # RQ's JSON serializer, ids only
    assert (func, args, kwargs) == ("runner.jobs.tasks.train_job", [run.id], {})
    assert run.config["epochs"] == 2

    worker = start_worker(training_settings, database_url, emulator)
    output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output

    run = the_run(engine)
    assert run.status == RunStatus.FINISHED, (run.error, output[-3000:])
    with session_scope(engine) as session:
        version = session.get(ModelVersion, run.version_id)
    assert version.number == 1 and version.status == "candidate"
    folder = Path(version.artifact_path)
    assert folder == Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router" / "v1"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "train_config.json",
        "metrics.json",
        "ftbot.json",
    ):
        assert (folder / name).exists(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["tokens_per_s"] > 0 and metrics["loss_curve"] and metrics["peak_memory_bytes"] > 0
    assert json.loads((folder / "ftbot.json").read_text())["snapshot"] == run.snapshot_id
    assert not list(folder.parent.glob(".run-*"))  # no partial folder left behind

    final = emulator.wait_for(
        lambda: "finished" in (status_message(emulator) or {}).get("text", ""), what="done"
    )
    message = status_message(emulator)
    assert final and "v1" in message["text"] and "Cancel" not in json.dumps(message["blocks"])
    assert any("running" in c.args.get("text", "") for c in emulator.calls_to("chat.update"))


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_only_owners_and_trainers_may_train_and_gates_must_pass(slack, emulator, engine, training_settings):
    seed_project(engine, n=8, emulator=emulator)  # too few examples per label
    assert slack.slash("train ticket-router", user="UBOB").status == 200
    refusal = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UBOB"], what="refusal"
    )
    assert "owner" in refusal[0]["text"]
    assert slack.slash("train ticket-router", user="UALICE").status == 200
    gates = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UALICE"], what="gates"
    )
    assert "not ready to train" in gates[0]["text"] and "Examples per label" in gates[0]["text"]
    assert slack.slash("train ticket-router epochz=3", user="UALICE").status == 200
    typo = emulator.wait_for(lambda: [e for e in emulator.ephemerals() if "epochz" in e["text"]], what="typo")
    assert "did you mean epochs" in typo[0]["text"]
    with session_scope(engine) as session:
        assert session.exec(select(TrainingRun)).all() == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_killed_work_horse_fails_the_run_and_registers_nothing(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(ENDLESS))
    emulator.wait_for(lambda: status_message(emulator), what="queued")
    worker = start_worker(training_settings, database_url, emulator)
    try:
        running = wait_until(
            lambda: (r := the_run(engine)).pid and r.progress.get("step") and r,
            what="training steps",
        )
        os.kill(running.pid, signal.SIGKILL)  # what the OOM killer does
        output, _ = worker.communicate(timeout=300)
    finally:
        worker.kill()
    run = the_run(engine)
    assert run.status == "failed" and "killed (signal 9)" in run.error, output[-2000:]
    assert "smaller batch_tokens" in run.advice and run.version_id is None
    assert not list((Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router").glob("*"))
    emulator.wait_for(
        lambda: "failed" in (status_message(emulator) or {}).get("text", ""), what="failed in Slack"
    )


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_cancel_stops_the_job_and_removes_partial_files(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(ENDLESS))
    emulator.wait_for(lambda: status_message(emulator), what="queued")
    worker = start_worker(training_settings, database_url, emulator)
    try:
        wait_until(lambda: the_run(engine).progress.get("step"), what="training steps")
        message = emulator.wait_for(
            lambda: (m := status_message(emulator)) and "running" in m["text"] and m, what="running status"
        )
        assert slack.press(message, "Cancel", user="UALICE").status == 200
        output, _ = worker.communicate(timeout=300)
    finally:
        worker.kill()
    run = the_run(engine)
    assert run.status == "cancelled", (run.error, output[-2000:])
    assert not list((Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router").glob("*"))
    emulator.wait_for(
        lambda: "cancelled" in (status_message(emulator) or {}).get("text", ""), what="cancelled"
    )


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_reconciler_fails_runs_whose_worker_or_job_is_gone(engine, training_settings):
    seed_project(engine)
    training_settings.ftbot_enqueue_timeout = 0  # no grace for a queued run whose job is missing
    connection = Redis.from_url(training_settings.redis_url)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        silent = runs.create_run(
            session, settings=training_settings, project=project, overrides={}, requested_by="U"
        )
        lost = runs.create_run(
            session, settings=training_settings, project=project, overrides={}, requested_by="U"
        )
        session.commit()
        assert silent.id is not None
        queues.enqueue(silent.id, silent.project_id, settings=training_settings, connection=connection)
        lost.rq_job_id = "ftbot-train-does-not-exist"
        silent.status = RunStatus.RUNNING
        silent.heartbeat_at = utcnow() - timedelta(seconds=training_settings.ftbot_heartbeat_timeout + 5)
        session.add_all([silent, lost])
        session.commit()
        changed = reconcile.reconcile(session, settings=training_settings, connection=connection)
        assert sorted(changed) == sorted([silent.id, lost.id])
        session.refresh(silent)
        session.refresh(lost)
    assert silent.status == lost.status == "failed"
    assert "heartbeat" in silent.error and "not in Redis" in lost.error


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_cli_trains_inline_and_lists_runs(engine, training_settings, database_url, tmp_path):
    seed_project(engine)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FTBOT_DATA_DIR": str(training_settings.ftbot_data_dir),
        "FTBOT_BASE_MODEL": training_settings.ftbot_base_model,
        "FTBOT_MODELS_DIR": str(training_settings.ftbot_models_dir),
        "REDIS_URL": training_settings.redis_url,
    }
    env.pop("SLACK_BOT_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "train", "ticket-router", *FAST, "--inline", "--yes"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished → v1 (candidate)" in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "bot.cli", "runs", "ticket-router", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = json.loads(listed.stdout)
    assert [(r["status"], r["version"]) for r in rows] == [("finished", 1)]
    assert rows[0]["metrics"]["train_tokens"] > 0


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_job_past_its_timeout_fails_with_advice(slack, emulator, engine, training_settings, database_url):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_job_timeout = 15  # the bot sets it on the job when it enqueues
    train_confirmed(slack, emulator, "ticket-router " + " ".join(ENDLESS))
    emulator.wait_for(lambda: status_message(emulator), what="queued")
    worker = start_worker(training_settings, database_url, emulator)
    output, _ = worker.communicate(timeout=300)
    run = the_run(engine)
    assert run.status == "failed" and "ran past its 15 s limit" in run.error, output[-2000:]
    assert "FTBOT_JOB_TIMEOUT" in run.advice and run.version_id is None
    assert not list((Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router").glob("*"))
