"""Training options are refused before anything is recorded or queued: in Slack with a short
ephemeral reply that renders, from the CLI with the message and a failing exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from redis import Redis
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import Snapshot, TrainingRun
from runner.jobs import queues
from tests.training_support import ROOT, seed_project

SLACK_SECTION_CHARS = 3000
SHORT = 2500  # the refusal fits one section with room to spare, however many keys were typed
UNKNOWN_400 = " ".join(f"option_{i}=1" for i in range(400))

BAD_OPTIONS = [
    ("seed=99999999999999999999999", "seed must be at most 4294967295, got 99999999999999999999999"),
    ("base_model=/etc/passwd", "base_model '/etc/passwd' is not accepted"),
    ("base_model=https://evil/x", "base_model 'https://evil/x' is not accepted"),
    ("base_model=file:///etc/passwd", "base_model 'file:///etc/passwd' is not accepted"),
    ("base_model=../x", "base_model '../x' is not accepted"),
    ("epochs=100000", "epochs must be at most 100, got 100000"),
    (UNKNOWN_400, "and 395 more unknown keys"),
]


def _nothing_recorded_or_queued(engine, settings) -> None:
    with session_scope(engine) as session:
        assert session.exec(select(TrainingRun)).all() == []
        assert session.exec(select(Snapshot)).all() == []
    redis = Redis.from_url(settings.redis_url)
    assert queues.queue(queues.TRAIN_QUEUE, redis).count == 0
    assert queues.queue(queues.EVAL_QUEUE, redis).count == 0


@pytest.mark.parametrize(("options", "expected"), BAD_OPTIONS, ids=lambda v: v[:30])
def test_slack_refuses_bad_training_options_with_a_short_reply(
    slack, emulator, engine, settings, options, expected
):
    settings.ftbot_base_model = "org/model"
    seed_project(engine, n=8, emulator=emulator)
    assert slack.slash(f"train ticket-router {options}", user="UALICE").status == 200
    (reply,) = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UALICE"], what="the refusal"
    )
    assert expected in reply["text"]
    assert reply["text"].startswith("invalid training overrides")
    assert len(reply["text"]) < SHORT
    assert all(len(b.get("text", {}).get("text", "")) <= SLACK_SECTION_CHARS for b in reply["blocks"])
    _nothing_recorded_or_queued(engine, settings)


def test_slack_names_the_allowed_folders_for_a_local_base_model(slack, emulator, engine, settings, tmp_path):
    settings.ftbot_base_model = str(tmp_path / "elsewhere" / "model")  # FTBOT_BASE_MODEL: the same rule
    seed_project(engine, n=8, emulator=emulator)
    assert slack.slash("train ticket-router epochs=2", user="UALICE").status == 200
    (reply,) = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UALICE"], what="the refusal"
    )
    assert "is not accepted" in reply["text"]
    assert f"FTBOT_MODELS_DIR ({settings.ftbot_models_dir})" in reply["text"]
    assert f"FTBOT_DATA_DIR ({settings.ftbot_data_dir})" in reply["text"]
    _nothing_recorded_or_queued(engine, settings)


@pytest.mark.parametrize(("options", "expected"), BAD_OPTIONS[:3] + BAD_OPTIONS[-2:], ids=lambda v: v[:30])
def test_cli_train_refuses_bad_options(engine, settings, database_url, options, expected):
    seed_project(engine, n=8)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FTBOT_DATA_DIR": str(settings.ftbot_data_dir),
        "FTBOT_BASE_MODEL": "org/model",
        "REDIS_URL": settings.redis_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "train", "ticket-router", *options.split()],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert expected in done.stderr and len(done.stderr) < SHORT, done.stderr
    _nothing_recorded_or_queued(engine, settings)


def test_slack_names_the_pull_command_for_a_model_not_pulled_yet(slack, emulator, engine, settings):
    settings.ftbot_base_model = "smollm2-135m"  # a catalogued name, absent from FTBOT_MODELS_DIR
    seed_project(engine, n=8, emulator=emulator)
    assert slack.slash("train ticket-router epochs=2", user="UALICE").status == 200
    (reply,) = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UALICE"], what="the refusal"
    )
    assert "run `ftbot models pull smollm2-135m`" in reply["text"]
    _nothing_recorded_or_queued(engine, settings)
