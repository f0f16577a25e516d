"""Hardware classes through the product: `/finetune train` routes the job to its class's queue in
Redis, refuses a job no class can run (with the reason, nothing queued), and `ftbot worker --gpus
--gpu-mem` serves the queues of the classes it can stand in for."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis import Redis
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import TrainingRun
from runner.jobs import queues
from tests.test_pause_resume import latest_run_id, message_showing
from tests.training_support import ROOT, seed_project, train_confirmed, wait_until, worker_env


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_run_goes_to_the_queue_of_the_smallest_class_that_fits(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_hardware_classes = ("cpu:0:0", "small:1:1M", "big:2:80G")
    train_confirmed(slack, emulator, "ticket-router epochs=1")  # the tiny model needs > 1 MiB
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    message_showing(emulator, run_id, "queued")
    redis = Redis.from_url(training_settings.redis_url)
    assert queues.train_job_id(run_id) in queues.queue("train-big", redis).job_ids
    assert queues.queue("train-small", redis).job_ids == [] and queues.queue("train", redis).job_ids == []


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_run_no_class_can_run_is_refused_with_the_reason(slack, emulator, engine, training_settings):
    seed_project(engine, emulator=emulator)
    training_settings.ftbot_hardware_classes = ("a10:1:24G", "a100:4:80G")
    assert slack.slash("train ticket-router procs=8 epochs=1", user="UALICE").status == 200
    told = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UALICE"), None), what="the refusal"
    )
    assert "No worker class can run this job: it needs 8 GPUs" in told["text"]
    assert "a100 (4 GPUs, 80 GiB each)" in told["text"]
    with session_scope(engine) as session:
        assert session.exec(select(TrainingRun)).all() == []
    redis = Redis.from_url(training_settings.redis_url)
    assert all(queues.queue(name, redis).count == 0 for name in ("train", "train-a10", "train-a100"))


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_worker_serves_the_classes_its_gpus_can_stand_in_for(
    emulator, engine, training_settings, database_url
):
    env = {
        **worker_env(training_settings, database_url, emulator),
        "FTBOT_HARDWARE_CLASSES": "cpu:0:0,a10:1:24G,h100x8:8:80G",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--gpus", "1", "--gpu-mem", "40G", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "serving train-a10, train-cpu, eval" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker", "--gpus", "1", "--gpu-mem", "lots", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "is not a size" in refused.stderr
