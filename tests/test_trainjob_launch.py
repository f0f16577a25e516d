"""``nodes=2`` with ``FTBOT_MULTINODE=k8s`` through the product, against a fake Kubernetes API
(tests/fake_k8s.py) whose stand-in controller runs the TrainJob's nodes as local processes (gloo,
one torch thread each): the job creates a TrainJob valid against the published CRD, streams rank 0's
progress to the status message, registers one version when the TrainJob completes and deletes it;
a node lost mid-run makes the TrainJob fail and the run fail with its reason, nothing registered;
Cancel deletes the TrainJob and its nodes end."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import ModelVersion, RunStatus
from tests.fake_k8s import FakeKubernetes
from tests.test_pause_resume import alive, get_run, latest_run_id, message_showing
from tests.test_trainjob import problems_with
from tests.training_support import ENDLESS, FAST, ROOT, seed_project, train_confirmed, wait_until, worker_env

TOKEN = "service-account-token"
PLURAL = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ftbot/trainjobs"


@pytest.fixture
def k8s(training_settings, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with FakeKubernetes(
        token=TOKEN,
        config_maps={"ftbot": {"REDIS_URL": training_settings.redis_url}},
        env=env,
        cwd=ROOT,
        bin_dir=Path(sys.executable).parent,
        log_dir=tmp_path,
    ) as fake:
        training_settings.ftbot_multinode = "k8s"
        yield fake


def start_launcher(settings: Any, database_url: str, emulator: Any, fake: FakeKubernetes, tmp_path: Path):
    import subprocess

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    env = {
        **worker_env(settings, database_url, emulator),
        "OMP_NUM_THREADS": "1",
        "FTBOT_MULTINODE": "k8s",
        "FTBOT_K8S_API_URL": fake.base_url,
        "FTBOT_K8S_NAMESPACE": "ftbot",
        "FTBOT_K8S_TOKEN_FILE": str(token),
        "FTBOT_K8S_CA_FILE": "",
        "FTBOT_K8S_POLL_INTERVAL": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--queues", "train", "--burst"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def versions(engine) -> list[int]:
    with session_scope(engine) as session:
        return sorted(v.number for v in session.exec(select(ModelVersion)).all())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_trainjob_is_created_watched_registered_once_and_deleted_and_cancel_deletes_it(
    slack, emulator, engine, training_settings, database_url, k8s, tmp_path
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router nodes=2 procs=1 " + " ".join(FAST))
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    launcher = start_launcher(training_settings, database_url, emulator, k8s, tmp_path)
    output, _ = launcher.communicate(timeout=900)
    assert launcher.returncode == 0, output[-4000:]

    run = get_run(engine, run_id)
    assert run.status == RunStatus.FINISHED, (run.error, output[-3000:])
    assert run.metrics["processes"] == 2
    assert versions(engine) == [1]
    name = f"ftbot-run-{run_id}-0"
    created = [path for method, path in k8s.requests if method == "POST"]
    assert created == [PLURAL]
    assert ("GET", f"{PLURAL}/{name}") in k8s.requests  # its status was watched
    assert ("DELETE", f"{PLURAL}/{name}") in k8s.requests and not k8s.objects  # deleted once complete
    assert len(k8s.pids(name)) == 2 and not any(alive(pid) for pid in k8s.pids(name))
    message_showing(emulator, run_id, "finished")

    # Cancel: the TrainJob is deleted and its nodes end; nothing is registered.
    train_confirmed(slack, emulator, "ticket-router nodes=2 procs=1 " + " ".join(ENDLESS))
    second = wait_until(lambda: (n := latest_run_id(engine)) != run_id and n, what="the second run")
    launcher = start_launcher(training_settings, database_url, emulator, k8s, tmp_path)
    try:
        wait_until(lambda: get_run(engine, second).progress.get("step"), timeout=300, what="training steps")
        name = f"ftbot-run-{second}-0"
        submitted = {k: v for k, v in k8s.objects[("ftbot", name)].items() if k != "status"}
        assert problems_with(submitted) == []  # what the job created is valid against the CRD
        running = message_showing(emulator, second, "running")
        assert slack.press(running, "Cancel", user="UALICE").status == 200
        output, _ = launcher.communicate(timeout=300)
    finally:
        launcher.kill()
    assert get_run(engine, second).status == RunStatus.CANCELLED, output[-3000:]
    assert ("DELETE", f"{PLURAL}/{name}") in k8s.requests and ("ftbot", name) not in k8s.objects
    wait_until(lambda: not any(alive(pid) for pid in k8s.pids(name)), timeout=120, what="the nodes to end")
    assert versions(engine) == [1]
    message_showing(emulator, second, "cancelled")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_node_lost_fails_the_trainjob_and_the_run_with_nothing_registered(
    slack, emulator, engine, training_settings, database_url, k8s, tmp_path
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router nodes=2 procs=1 " + " ".join(ENDLESS))
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    launcher = start_launcher(training_settings, database_url, emulator, k8s, tmp_path)
    try:
        wait_until(lambda: get_run(engine, run_id).progress.get("step"), timeout=300, what="training steps")
        name = f"ftbot-run-{run_id}-0"
        k8s.fail_node(name, 1)
        output, _ = launcher.communicate(timeout=300)
    finally:
        launcher.kill()
    run = get_run(engine, run_id)
    assert run.status == RunStatus.FAILED, output[-3000:]
    assert f"TrainJob {name} failed" in (run.error or "") and "a node exited" in (run.error or "")
    assert ("ftbot", name) in k8s.objects  # kept, for its pods' logs
    assert versions(engine) == []
    assert not list((Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router").glob("v*"))
    message_showing(emulator, run_id, "failed")
