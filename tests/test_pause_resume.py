"""Pause, resume and resume-after-a-dead-worker, for real: Slack buttons and `/finetune pause|resume`
through the running bot, `ftbot worker` subprocesses training the tiny model on CPU, checkpoints on
disk. A paused-and-resumed run registers an adapter bit-for-bit equal to an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from safetensors.torch import load_file
from sqlmodel import col, select

from runner.core import audit
from runner.core.db import session_scope
from runner.core.models import ModelVersion, RunStatus, TrainingRun, utcnow
from runner.data import projects
from runner.jobs import queues, runs
from tests.training_support import ROOT, seed_project, train_confirmed, wait_until, worker_env

# Long enough to press Pause in the middle (~100 steps of a few ms to a few tens), a checkpoint every
# 4 steps, dropout on (so the resumed random generator matters), no early stop.
PAUSABLE = [
    "epochs=6",
    "lora_r=8",
    "max_len=256",
    "batch_tokens=256",
    "checkpoint_every=4",
    "early_stopping_patience=0",
]


def start_worker(settings: Any, database_url: str, emulator: Any) -> subprocess.Popen[str]:
    """A burst worker on the train queue, one torch thread (so two runs compute the same bits)."""
    env = {**worker_env(settings, database_url, emulator), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "train", "--burst"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_to_end(settings: Any, database_url: str, emulator: Any) -> str:
    worker = start_worker(settings, database_url, emulator)
    output, _ = worker.communicate(timeout=900)
    assert worker.returncode == 0, output[-4000:]
    return output


def get_run(engine, run_id: int) -> TrainingRun:
    with session_scope(engine) as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None
        return run


def latest_run_id(engine) -> int:
    with session_scope(engine) as session:
        return max(session.exec(select(TrainingRun.id)).all() or [0])


def run_message(emulator, run_id: int) -> dict[str, Any] | None:
    return next(
        (
            m
            for m in emulator.messages("CGENERAL")
            if m.get("text", "").startswith(f"Training run {run_id} of")
        ),
        None,
    )


def message_showing(emulator, run_id: int, words: str) -> dict[str, Any]:
    return emulator.wait_for(
        lambda: (m := run_message(emulator, run_id)) and words in m["text"] and m,
        timeout=300,  # a worker on a busy machine takes a while to load torch and the model
        what=f"run {run_id}: {words}",
    )


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        element["text"]["text"]
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def version_of(engine, run_id: int) -> ModelVersion:
    with session_scope(engine) as session:
        version = session.exec(select(ModelVersion).where(col(ModelVersion.run_id) == run_id)).one()
        return version


def assert_same_adapter(a: ModelVersion, b: ModelVersion) -> None:
    mine = load_file(Path(a.artifact_path) / "adapter_model.safetensors")
    theirs = load_file(Path(b.artifact_path) / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert torch.equal(tensor, theirs[name]), name
    assert a.metrics["loss_curve"] == b.metrics["loss_curve"]
    assert a.metrics["eval_losses"] == b.metrics["eval_losses"]


def checkpoint_folder(settings: Any, run_id: int) -> Path:
    return Path(settings.ftbot_data_dir) / "artifacts" / "ticket-router" / f".run-{run_id}.checkpoint"


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_pause_and_resume_buttons_end_bit_for_bit_where_an_uninterrupted_run_ends(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(PAUSABLE))
    whole_id = wait_until(lambda: latest_run_id(engine), what="the first run")
    run_to_end(training_settings, database_url, emulator)
    whole = get_run(engine, whole_id)
    assert whole.status == RunStatus.FINISHED, whole.error

    train_confirmed(slack, emulator, "ticket-router " + " ".join(PAUSABLE))
    run_id = wait_until(lambda: (n := latest_run_id(engine)) != whole_id and n, what="the second run")
    queued = message_showing(emulator, run_id, "queued")
    assert buttons(queued) == ["Pause", "Cancel"]
    # The preflight learnt from the first run: its measured throughput sets this one's estimate.
    estimate = get_run(engine, run_id).estimate
    assert estimate["throughput_source"] == "measured (1 run)"
    assert estimate["tokens_per_s"] == pytest.approx(whole.metrics["tokens_per_s"], rel=1e-3)
    assert "Estimate: ~" in json.dumps(queued["blocks"])
    worker = start_worker(training_settings, database_url, emulator)
    try:
        wait_until(lambda: get_run(engine, run_id).progress.get("step"), timeout=300, what="training steps")
        running = message_showing(emulator, run_id, "running")
        assert slack.press(running, "Pause", user="UALICE").status == 200
        output, _ = worker.communicate(timeout=600)  # a burst worker: it ends once the run let go of it
    finally:
        worker.kill()
    assert worker.returncode == 0, output[-3000:]
    paused = get_run(engine, run_id)
    assert paused.status == RunStatus.PAUSED, (paused.error, output[-3000:])
    assert 0 < paused.checkpoint_step < whole.metrics["steps"] and paused.control is None
    assert (checkpoint_folder(training_settings, run_id) / "checkpoint.pt").exists()
    shown = message_showing(emulator, run_id, "paused")
    assert buttons(shown) == ["Resume", "Cancel"]
    assert f"checkpoint at step {paused.checkpoint_step}" in json.dumps(shown["blocks"])

    assert slack.press(shown, "Resume", user="UALICE").status == 200
    requeued = message_showing(emulator, run_id, "queued")
    assert f"Resumed from step {paused.checkpoint_step} by <@UALICE>" in requeued["text"]
    again = get_run(engine, run_id)
    assert (again.attempt, again.rq_job_id) == (1, queues.train_job_id(run_id, 1))
    run_to_end(training_settings, database_url, emulator)

    done = get_run(engine, run_id)
    assert done.status == RunStatus.FINISHED, done.error
    assert done.metrics["resumed_from_step"] == paused.checkpoint_step
    assert_same_adapter(version_of(engine, run_id), version_of(engine, whole_id))
    assert not checkpoint_folder(training_settings, run_id).exists()  # the version holds the result
    message_showing(emulator, run_id, "finished")
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        acts = [(e.user_id, e.action, e.allowed) for e in audit.entries(session, project_id=project.id)]
    assert ("UALICE", "pause", True) in acts and ("UALICE", "resume", True) in acts


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_run_whose_worker_died_resumes_from_its_checkpoint_and_says_so(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(PAUSABLE))
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    worker = start_worker(training_settings, database_url, emulator)
    try:
        horse = wait_until(
            lambda: (r := get_run(engine, run_id)).checkpoint_step and r.pid,
            timeout=300,  # a worker on a busy machine takes a while to load torch and the model
            what="a checkpoint",
        )
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies outright; its horse goes with it
        worker.communicate(timeout=60)
        wait_until(lambda: not alive(horse), what="the training process to end")
    finally:
        worker.kill()
    died = get_run(engine, run_id)
    assert died.status == RunStatus.RUNNING  # nobody noticed yet
    with session_scope(engine) as session:  # its heartbeat is now as old as a dead worker's gets
        stored = session.get(TrainingRun, run_id)
        assert stored is not None
        stored.heartbeat_at = utcnow() - timedelta(seconds=training_settings.ftbot_heartbeat_timeout + 5)
        session.add(stored)

    output = run_to_end(training_settings, database_url, emulator)  # its reconcile pass resumes the run

    done = get_run(engine, run_id)
    assert done.status == RunStatus.FINISHED, (done.error, output[-3000:])
    assert (done.auto_resumes, done.attempt) == (1, 1)
    assert done.metrics["resumed_from_step"] == died.checkpoint_step
    assert done.note and f"Resumed from step {died.checkpoint_step} after its worker stopped" in done.note
    assert "automatic resume 1 of 2" in done.note
    final = message_showing(emulator, run_id, "finished")
    assert "automatic resume 1 of 2" in json.dumps(final["blocks"])
    assert not checkpoint_folder(training_settings, run_id).exists()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"], indirect=True)
def test_pause_and_resume_commands_on_a_queued_run(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router epochs=1")
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    queued = message_showing(emulator, run_id, "queued")
    estimate = get_run(engine, run_id).estimate
    assert estimate["throughput_source"] == "default" and estimate["tokens"] > 0 and estimate["examples"] > 0
    assert estimate["params"] and estimate["memory_bytes"]  # the tiny model's config.json is on disk
    assert f"{estimate['tokens']:,} tokens" in json.dumps(queued["blocks"])
    connection = Redis.from_url(training_settings.redis_url)

    assert slack.slash(f"pause {run_id}", user="UBOB").status == 200  # not his run, not his project
    refusal = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UBOB"], what="the refusal"
    )
    assert "may pause" in refusal[0]["text"]
    assert slack.slash(f"pause {run_id}", user="UALICE").status == 200
    paused = message_showing(emulator, run_id, "paused")
    assert buttons(paused) == ["Resume", "Cancel"]
    first_job = queues.fetch_job(connection, queues.train_job_id(run_id))
    assert first_job is not None and first_job.get_status() == "canceled"

    assert slack.slash(f"resume {run_id}", user="UALICE").status == 200
    resumed = message_showing(emulator, run_id, "queued")
    assert "Resumed from the start (no checkpoint yet) by <@UALICE>" in resumed["text"]
    job = queues.fetch_job(connection, queues.train_job_id(run_id, 1))
    assert job is not None and job.get_status() == "queued" and job.meta["attempt"] == 1

    assert slack.slash(f"resume {run_id}", user="UALICE").status == 200
    told = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if "only a paused run" in e["text"]], what="not paused"
    )
    assert told
    assert slack.press(resumed, "Cancel", user="UALICE").status == 200
    message_showing(emulator, run_id, "cancelled")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_an_earlier_tries_evaluation_job_leaves_a_resumed_run_to_its_own(
    emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        run = runs.create_run(
            session, settings=training_settings, project=project, overrides={}, requested_by="U"
        )
        session.flush()
        version = ModelVersion(
            project_id=project.id,
            number=1,
            run_id=run.id,
            snapshot_id=run.snapshot_id,
            base_model="tiny",
            artifact_path="/nowhere",
        )
        session.add(version)
        session.flush()
        run.status, run.version_id, run.attempt = RunStatus.FINISHED, version.id, 1
        run.eval_job_id = queues.eval_job_id(run.id, 1)
        run_id = run.id
    redis = Redis.from_url(training_settings.redis_url)
    stale = queues.queue(queues.EVAL_QUEUE, redis).enqueue(
        "runner.jobs.tasks.evaluate_job", run_id, job_id=queues.eval_job_id(run_id)
    )
    worker = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "eval", "--burst"],
        env=worker_env(training_settings, database_url, emulator),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stdout[-2000:]
    done = Job.fetch(stale.id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished"
    assert done.return_value() == {
        "run_id": run_id,
        "skipped": "the run was resumed; its latest evaluation job runs",
    }
