"""``nodes=2`` through the product, two "nodes" on this machine: two ``ftbot worker --node`` processes,
each starting torchrun with ``--nnodes 2 --nproc-per-node 1`` and the c10d rendezvous on 127.0.0.1 at
a free port (gloo, one torch thread per process). The run trains like one process with the same
global batch (two micro-batches per step) within the bounds of tests/unit/test_distributed.py and
registers one version; Cancel ends both nodes' processes and registers nothing. Pause reaches rank 0
wherever it runs; the resumed two-node run ends bit for bit where an uninterrupted one ends (each
rank's data share and random generators are its global rank's, whichever node it lands on in each
try). A node lost while
training (its machine gone: its worker and everything under it killed) fails the run, naming it,
with nothing registered. A run asking for more nodes than the deployment has is refused when it is
asked for."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from safetensors.torch import load_file
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import ModelVersion, RunStatus, TrainingRun
from runner.jobs import multinode
from runner.jobs.queues import queue
from tests.fake_k8s import kill_tree
from tests.test_pause_resume import (
    PAUSABLE,
    alive,
    assert_same_adapter,
    checkpoint_folder,
    get_run,
    latest_run_id,
    message_showing,
)
from tests.training_support import ENDLESS, ROOT, seed_project, train_confirmed, wait_until, worker_env
from tests.unit.test_distributed import LOSS_RTOL, WEIGHT_ATOL

NODES = "a=127.0.0.1,b=127.0.0.1"
# Dropout off (each process draws its own masks); two optimizer-step micro-batches either way.
SAME = ["epochs=2", "lora_r=8", "lora_dropout=0", "max_len=256", "batch_tokens=1024", "checkpoint_every=0"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_worker(settings: Any, database_url: str, emulator: Any, node: str, port: int, *, burst: bool):
    env = {
        **worker_env(settings, database_url, emulator),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "FTBOT_MULTINODE": "torchrun",
        "FTBOT_NODES": NODES,
        "FTBOT_RDZV_PORT": str(port),
    }
    queues = "train" if node == "a" else f"node-{node}"  # the head also trains one-machine runs here
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--node", node, "--queues", queues]
        + (["--burst"] if burst else []),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def version_of(engine, run_id: int) -> ModelVersion:
    with session_scope(engine) as session:
        return session.exec(select(ModelVersion).where(ModelVersion.run_id == run_id)).one()


def all_versions(engine) -> list[int]:
    with session_scope(engine) as session:
        return sorted(v.number for v in session.exec(select(ModelVersion)).all())


def node_job_status(redis: Redis, run_id: int, attempt: int, node: str) -> Any:
    job = Job.fetch(multinode.node_job_id(run_id, attempt, node), redis, serializer=JSONSerializer)
    return job.get_status(refresh=True)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_two_nodes_train_like_one_process_register_once_and_cancel_ends_both(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    port = free_port()
    training_settings.ftbot_multinode = "torchrun"  # the bot routes the run to the head's queue
    training_settings.ftbot_nodes = tuple(NODES.split(","))
    redis = Redis.from_url(training_settings.redis_url)
    other = node_worker(training_settings, database_url, emulator, "b", port, burst=False)
    try:
        train_confirmed(slack, emulator, "ticket-router nodes=2 procs=1 " + " ".join(SAME))
        two_id = wait_until(lambda: latest_run_id(engine), what="the two-node run")
        assert multinode.node_queue("a") == "node-a"
        assert Job.fetch(f"ftbot-train-{two_id}", redis, serializer=JSONSerializer).origin == "node-a"
        train_confirmed(slack, emulator, "ticket-router grad_accum_steps=2 " + " ".join(SAME))
        one_id = wait_until(lambda: (n := latest_run_id(engine)) != two_id and n, what="the one-process run")

        wait_until(lambda: Worker.all(queue=queue("node-b", redis)), timeout=120, what="node b's worker")
        head = node_worker(training_settings, database_url, emulator, "a", port, burst=True)
        output, _ = head.communicate(timeout=900)
        assert head.returncode == 0, output[-4000:]

        two, one = get_run(engine, two_id), get_run(engine, one_id)
        assert two.status == RunStatus.FINISHED, (two.error, output[-3000:])
        assert one.status == RunStatus.FINISHED, one.error
        assert two.metrics["processes"] == 2 and one.metrics["processes"] == 1
        assert two.metrics["steps"] == one.metrics["steps"] >= 4
        wait_until(  # node b trained its share
            lambda: node_job_status(redis, two_id, 0, "b") == JobStatus.FINISHED, what="node b's job"
        )
        for (step, mine), (their_step, theirs) in zip(
            two.metrics["loss_curve"], one.metrics["loss_curve"], strict=True
        ):
            assert step == their_step and math.isclose(mine, theirs, rel_tol=LOSS_RTOL), (step, mine, theirs)
        assert all_versions(engine) == [1, 2]
        mine = load_file(Path(version_of(engine, two_id).artifact_path) / "adapter_model.safetensors")
        theirs = load_file(Path(version_of(engine, one_id).artifact_path) / "adapter_model.safetensors")
        assert mine.keys() == theirs.keys()
        for name, tensor in mine.items():
            torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=WEIGHT_ATOL)
        folder = Path(version_of(engine, two_id).artifact_path).parent
        assert not list(folder.glob(".run-*"))  # no partial, checkpoint or launch folder left
        message_showing(emulator, two_id, "finished")

        # Cancel: both nodes' processes end, nothing is registered.
        train_confirmed(slack, emulator, "ticket-router nodes=2 " + " ".join(ENDLESS))
        third = wait_until(lambda: (n := latest_run_id(engine)) not in (two_id, one_id) and n, what="run 3")
        launch = folder / f".run-{third}.launch"
        head = node_worker(training_settings, database_url, emulator, "a", port, burst=True)
        try:
            wait_until(
                lambda: get_run(engine, third).progress.get("step"), timeout=300, what="training steps"
            )
            ranks = [int(p.read_text()) for p in sorted(launch.glob("rank-*.pid"))]
            assert len(ranks) == 2
            running = message_showing(emulator, third, "running")
            assert slack.press(running, "Cancel", user="UALICE").status == 200
            output, _ = head.communicate(timeout=300)
        finally:
            head.kill()
        cancelled = get_run(engine, third)
        assert cancelled.status == RunStatus.CANCELLED, (cancelled.error, output[-3000:])
        wait_until(
            lambda: not any(alive(pid) for pid in ranks), timeout=120, what="both nodes' ranks to exit"
        )
        wait_until(
            lambda: node_job_status(redis, third, 0, "b") == JobStatus.FINISHED,
            timeout=120,
            what="node b's job to end",
        )
        assert all_versions(engine) == [1, 2]  # nothing half-registered
        message_showing(emulator, third, "cancelled")
    finally:
        other.send_signal(signal.SIGTERM)
        try:
            other.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_more_nodes_than_the_deployment_has_are_refused_when_asked(
    slack, emulator, engine, training_settings
):
    seed_project(engine, emulator=emulator)
    assert slack.slash("train ticket-router nodes=2 epochs=1", user="UALICE").status == 200
    told = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UALICE"), None), what="the refusal"
    )
    assert "nodes=2 needs a multi-node launcher: set FTBOT_MULTINODE" in told["text"]

    training_settings.ftbot_multinode = "torchrun"
    training_settings.ftbot_nodes = ("a=10.0.0.1", "b=10.0.0.2")
    assert slack.slash("train ticket-router nodes=3 epochs=1", user="UALICE").status == 200
    told = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if "nodes=3" in e["text"]), None), what="the refusal"
    )
    assert "nodes=3 but FTBOT_NODES lists 2 node(s)" in told["text"]
    with session_scope(engine) as session:
        assert session.exec(select(TrainingRun)).all() == []


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_node_lost_while_training_fails_the_run_naming_it(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    port = free_port()
    training_settings.ftbot_multinode = "torchrun"
    training_settings.ftbot_nodes = tuple(NODES.split(","))
    redis = Redis.from_url(training_settings.redis_url)
    other = node_worker(training_settings, database_url, emulator, "b", port, burst=False)
    try:
        train_confirmed(slack, emulator, "ticket-router nodes=2 " + " ".join(ENDLESS))
        run_id = wait_until(lambda: latest_run_id(engine), what="the run")
        wait_until(lambda: Worker.all(queue=queue("node-b", redis)), timeout=120, what="node b's worker")
        head = node_worker(training_settings, database_url, emulator, "a", port, burst=True)
        try:
            wait_until(lambda: get_run(engine, run_id).progress.get("step"), timeout=300, what="training")
            launch = (
                Path(training_settings.ftbot_data_dir)
                / "artifacts"
                / "ticket-router"
                / f".run-{run_id}.launch"
            )
            ranks = [int(p.read_text()) for p in sorted(launch.glob("rank-*.pid"))]
            kill_tree(other.pid)  # node b's machine is gone
            output, _ = head.communicate(timeout=300)
        finally:
            head.kill()
        run = get_run(engine, run_id)
        assert run.status == RunStatus.FAILED, output[-3000:]
        assert "b: lost" in (run.error or ""), run.error
        wait_until(lambda: not any(alive(pid) for pid in ranks), timeout=120, what="the ranks to exit")
        assert all_versions(engine) == []
        message_showing(emulator, run_id, "failed")
    finally:
        other.kill()
        other.communicate(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_paused_two_node_run_resumes_and_ends_bit_for_bit_where_an_uninterrupted_one_ends(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    port = free_port()
    training_settings.ftbot_multinode = "torchrun"
    training_settings.ftbot_nodes = tuple(NODES.split(","))
    redis = Redis.from_url(training_settings.redis_url)
    other = node_worker(training_settings, database_url, emulator, "b", port, burst=False)

    def head_to_end() -> str:
        head = node_worker(training_settings, database_url, emulator, "a", port, burst=True)
        output, _ = head.communicate(timeout=900)
        assert head.returncode == 0, output[-4000:]
        return output

    try:
        wait_until(lambda: Worker.all(queue=queue("node-b", redis)), timeout=120, what="node b's worker")
        train_confirmed(slack, emulator, "ticket-router nodes=2 " + " ".join(PAUSABLE))
        whole_id = wait_until(lambda: latest_run_id(engine), what="the uninterrupted run")
        head_to_end()
        whole = get_run(engine, whole_id)
        assert whole.status == RunStatus.FINISHED, whole.error

        train_confirmed(slack, emulator, "ticket-router nodes=2 " + " ".join(PAUSABLE))
        run_id = wait_until(lambda: (n := latest_run_id(engine)) != whole_id and n, what="the second run")
        head = node_worker(training_settings, database_url, emulator, "a", port, burst=True)
        try:
            wait_until(lambda: get_run(engine, run_id).progress.get("step"), timeout=300, what="training")
            running = message_showing(emulator, run_id, "running")
            assert slack.press(running, "Pause", user="UALICE").status == 200
            output, _ = head.communicate(timeout=600)
        finally:
            head.kill()
        paused = get_run(engine, run_id)
        assert paused.status == RunStatus.PAUSED, (paused.error, output[-3000:])
        assert 0 < paused.checkpoint_step < whole.metrics["steps"]
        assert (checkpoint_folder(training_settings, run_id) / "checkpoint.pt").exists()
        wait_until(  # node b's share stopped at the same step and its job ended
            lambda: node_job_status(redis, run_id, 0, "b") == JobStatus.FINISHED, what="node b's job"
        )
        shown = message_showing(emulator, run_id, "paused")
        assert slack.press(shown, "Resume", user="UALICE").status == 200
        message_showing(emulator, run_id, "queued")
        head_to_end()

        done = get_run(engine, run_id)
        assert done.status == RunStatus.FINISHED, done.error
        assert done.metrics["resumed_from_step"] == paused.checkpoint_step
        assert node_job_status(redis, run_id, 1, "b") == JobStatus.FINISHED  # the second try's node job
        with session_scope(engine) as session:
            versions = {v.run_id: v for v in session.exec(select(ModelVersion)).all()}
        assert sorted(versions) == [whole_id, run_id]
        assert_same_adapter(versions[run_id], versions[whole_id])
    finally:
        other.send_signal(signal.SIGTERM)
        try:
            other.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()
