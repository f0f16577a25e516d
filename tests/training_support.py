"""Shared by the training and evaluation tests: the tiny model, a seeded project, a worker process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from demo import synthetic
from runner.core.db import session_scope
from runner.core.models import TrainingRun
from runner.data import examples, projects
from tests.conftest import BOT_TOKEN

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = "route the support ticket to one queue: billing, technical, account or shipping."
LABELS = "billing\ntechnical\naccount\nshipping"
# Small and quick: the learning itself is asserted in tests/unit/test_training.py and by evaluation.
FAST = ["epochs=2", "lora_r=8", "max_len=256", "batch_tokens=4096"]
ENDLESS = ["epochs=100", "early_stopping_patience=0", "max_len=256", "batch_tokens=1024"]  # until killed


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from demo.tinymodel import make_tiny_model

    texts = synthetic.ticket_texts(2000) + [INSTRUCTIONS, *LABELS.split()]
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts)


@pytest.fixture
def database_url(engine) -> str:
    """The same database as `engine`, as a URL a subprocess can use."""
    if engine.dialect.name == "sqlite":
        return engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    return f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


@pytest.fixture
def training_settings(settings, tiny_model):
    settings.ftbot_base_model = str(tiny_model)  # read per request, so the running bot sees it
    settings.ftbot_models_dir = tiny_model.parent  # a local base model must lie under an allowed root
    settings.ftbot_progress_interval = 0.5
    return settings


def seed_project(engine, n: int = 96, emulator: Any = None) -> None:
    """A trainable ticket-routing project (its thread root in the emulator when given), its examples
    imported with decided labels."""
    with session_scope(engine) as session:
        project = projects.create_project(
            session,
            projects.ProjectSpec(
                name="ticket-router",
                task_type="classification",
                label_lines=LABELS,
                reviewers=["UALICE"],
                min_per_label=5,
                instructions=INSTRUCTIONS,
            ),
            owner_id="UALICE",
            channel_id="CGENERAL",
        )
        if emulator is not None:
            project.root_ts = emulator.post_user_message("CGENERAL", "Dataset ticket-router", "UBOT")["ts"]
        session.add(project)
        session.commit()
        for i, (ticket, queue) in enumerate(synthetic.ticket_examples(n, seed=7)):
            examples.add_example(
                session,
                project,
                channel_id="",
                message_ts=f"import:{i}",
                author_id="",
                text=ticket,
                source="import",
                final_label=queue,
                decided_by="test",
                normalise=False,
            )


def worker_env(settings, database_url: str, emulator) -> dict[str, str]:
    drop = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")
    return {
        **{k: v for k, v in os.environ.items() if k not in drop},
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.redis_url,
        "FTBOT_DATA_DIR": str(settings.ftbot_data_dir),
        "FTBOT_BASE_MODEL": settings.ftbot_base_model,
        "FTBOT_MODELS_DIR": str(settings.ftbot_models_dir),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": emulator.base_url,
        "FTBOT_PROGRESS_INTERVAL": "0.5",
        "PYTHONUNBUFFERED": "1",
        **({"FTBOT_INFERENCE_URL": settings.ftbot_inference_url} if settings.ftbot_inference_url else {}),
    }


def start_worker(
    settings: Any, database_url: str, emulator: Any, *, burst: bool = True, queues: str = "train"
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "bot.cli", "worker", "--queues", queues] + (["--burst"] if burst else [])
    return subprocess.Popen(
        args,
        env=worker_env(settings, database_url, emulator),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_worker_burst(settings: Any, database_url: str, emulator: Any, queues: str = "train,eval") -> str:
    """Run a burst worker to the end; returns its output (asserting it exited cleanly)."""
    worker = start_worker(settings, database_url, emulator, queues=queues)
    output, _ = worker.communicate(timeout=900)
    assert worker.returncode == 0, output[-4000:]
    return output


def wait_until(predicate: Any, timeout: float = 120.0, what: str = "a condition") -> Any:
    """Poll the database-backed `predicate` until it holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return result


def the_run(engine) -> TrainingRun:
    with session_scope(engine) as session:
        runs = session.exec(select(TrainingRun)).all()
        assert len(runs) == 1
        return runs[0]


def request_messages(emulator, channel: str = "CGENERAL") -> list[dict[str, Any]]:
    """The bot's training-request messages still waiting for Confirm (or Approve) or Cancel."""
    return [
        m
        for m in emulator.messages(channel)
        if m.get("text", "").startswith("Train ") and m.get("text", "").endswith(("Cancel", "approve it"))
    ]


def ask_to_train(slack, emulator, words: str, *, user: str = "UALICE") -> dict[str, Any]:
    """`/finetune train <words>` as `user`; returns the estimate message the bot posts."""
    waiting = {m["ts"] for m in request_messages(emulator)}
    assert slack.slash("train " + words, user=user).status == 200
    return emulator.wait_for(
        lambda: next((m for m in request_messages(emulator) if m["ts"] not in waiting), None),
        what="the training estimate to confirm",
    )


def train_confirmed(slack, emulator, words: str, *, user: str = "UALICE") -> int:
    """`/finetune train <words>`, then Confirm on the estimate the bot posted, both as `user`;
    returns the run's id once its status message has replaced the estimate."""
    asked = ask_to_train(slack, emulator, words, user=user)
    assert slack.press(asked, "Confirm", user=user).status == 200
    shown = emulator.wait_for(
        lambda: next(
            (
                m
                for m in emulator.messages("CGENERAL")
                if m["ts"] == asked["ts"] and m.get("text", "").startswith("Training run ")
            ),
            None,
        ),
        what="the run's status message",
    )
    return int(shown["text"].split()[2])


def status_message(emulator) -> dict[str, Any] | None:
    return next(
        (m for m in emulator.messages("CGENERAL") if m.get("text", "").startswith("Training run")), None
    )


def base_weights_fingerprint(model_dir: str | Path) -> str:
    """A content hash of a local model folder's weights (``*.safetensors`` and ``*.bin``).

    Args:
        model_dir: Folder holding the weight files.

    Returns:
        A sha256 hex digest over the file names and bytes, in name order.

    Raises:
        FileNotFoundError: the folder holds no weight files.
    """
    folder = Path(model_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin"} and p.is_file())
    if not files:
        raise FileNotFoundError(f"no *.safetensors or *.bin weights in {folder}")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
