"""`procs=2` through the product: the RQ job launches torchrun (two gloo processes on CPU), rank 0's
progress reaches the status message, the version is registered once; Cancel ends every process and
registers nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import ModelVersion, RunStatus
from tests.test_pause_resume import alive, get_run, latest_run_id, message_showing, run_to_end, start_worker
from tests.training_support import ENDLESS, FAST, seed_project, train_confirmed, wait_until


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_a_two_process_run_registers_one_version_and_cancel_ends_every_process(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, emulator=emulator)
    train_confirmed(slack, emulator, "ticket-router procs=2 " + " ".join(FAST))
    run_id = wait_until(lambda: latest_run_id(engine), what="the run")
    run_to_end(training_settings, database_url, emulator)

    run = get_run(engine, run_id)
    assert run.status == RunStatus.FINISHED, run.error
    assert run.metrics["processes"] == 2 and len(run.metrics["peak_memory_per_process"]) == 2
    with session_scope(engine) as session:
        versions = session.exec(select(ModelVersion)).all()
    assert [v.number for v in versions] == [1]
    folder = Path(versions[0].artifact_path)
    assert (folder / "adapter_model.safetensors").exists()
    assert not list(folder.parent.glob(".run-*"))  # no partial, checkpoint or launch folder left
    assert any(
        "running" in c.args.get("text", "") and "Loss" in json.dumps(c.args.get("blocks"))
        for c in emulator.calls_to("chat.update")
    )
    message_showing(emulator, run_id, "finished")

    train_confirmed(slack, emulator, "ticket-router procs=2 " + " ".join(ENDLESS))
    second = wait_until(lambda: (n := latest_run_id(engine)) != run_id and n, what="the second run")
    launch = Path(training_settings.ftbot_data_dir) / "artifacts" / "ticket-router" / f".run-{second}.launch"
    worker = start_worker(training_settings, database_url, emulator)
    try:
        wait_until(lambda: get_run(engine, second).progress.get("step"), timeout=300, what="training steps")
        ranks = [int(p.read_text()) for p in sorted(launch.glob("rank-*.pid"))]
        assert len(ranks) == 2
        running = message_showing(emulator, second, "running")
        assert slack.press(running, "Cancel", user="UALICE").status == 200
        output, _ = worker.communicate(timeout=300)
    finally:
        worker.kill()
    cancelled = get_run(engine, second)
    assert cancelled.status == RunStatus.CANCELLED, (cancelled.error, output[-3000:])
    wait_until(lambda: not any(alive(pid) for pid in ranks), timeout=120, what="the ranks to exit")
    with session_scope(engine) as session:
        assert len(session.exec(select(ModelVersion)).all()) == 1  # nothing half-registered
    message_showing(emulator, second, "cancelled")
