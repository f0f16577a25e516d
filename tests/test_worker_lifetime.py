"""The trainer never outlives its worker: killing a worker's process group ends the work-horse and
what it launched, and stopping a worker ends the training at once and fails its run with the reason.
With real `ftbot worker` processes on real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from runner.jobs import queues
from tests.training_support import (
    ENDLESS,
    ROOT,
    seed_project,
    start_worker,
    status_message,
    the_run,
    train_confirmed,
    wait_until,
)


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_killing_the_worker_process_group_ends_the_work_horse_and_what_it_launched(
    engine, settings, database_url, tmp_path
):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLACK_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.redis_url,
        "FTBOT_DATA_DIR": str(settings.ftbot_data_dir),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "train"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a process group of its own, as under systemd or a container
    )
    pid_file = tmp_path / "pids.json"
    try:
        queues.queue("train", Redis.from_url(settings.redis_url)).enqueue(
            "tests.worker_jobs.launch_and_wait", str(pid_file), job_timeout=900
        )
        pids = wait_until(lambda: pid_file.exists() and json.loads(pid_file.read_text()), what="the job")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=60)
        wait_until(lambda: gone(pids["horse"]) and gone(pids["child"]), timeout=60, what="the horse to end")
    finally:
        for pid in json.loads(pid_file.read_text()).values() if pid_file.exists() else ():
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if worker.poll() is None:
            worker.kill()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_stopping_the_worker_ends_the_training_and_fails_the_run(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router " + " ".join(ENDLESS))
    emulator.wait_for(lambda: status_message(emulator), what="queued")
    worker = start_worker(training_settings, database_url, emulator, burst=False)
    try:
        running = wait_until(
            lambda: (r := the_run(engine)).pid and r.progress.get("step") and r, what="training steps"
        )
        worker.send_signal(signal.SIGTERM)  # a deploy, `docker stop`
        output, _ = worker.communicate(timeout=120)  # not hours: the training ends with the worker
        assert gone(running.pid), "the trainer outlived its worker"
    finally:
        worker.kill()
    run = the_run(engine)
    assert run.status == "failed" and "worker was stopped" in (run.error or ""), output[-2000:]
    assert "Train again" in (run.advice or "") and run.version_id is None
    assert not list((Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router").glob("*"))
    emulator.wait_for(
        lambda: "failed" in (status_message(emulator) or {}).get("text", ""), what="failed in Slack"
    )
