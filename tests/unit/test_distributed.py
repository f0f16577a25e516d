"""Two gloo processes under torchrun train the tiny 4-bit model on CPU like one process with the same
global batch; SIGTERM to the group stops every process at one step boundary with a checkpoint; a
rank killed outright fails the run with nothing written.

Tolerance: the processes' gradients are summed by an all-reduce instead of accumulated in one
process, and the loss sums are added in another order. With two processes and two micro-batches per
step that changes nothing (each weight's gradient is one sum of two addends, scaled by powers of
two): the runs agree bit for bit here. With more processes the order of the additions differs
(float32, ~1e-7 relative per step); the test allows 1e-4 relative on every step's loss and 1e-3
absolute on every adapter weight, the bounds stated for any process count. Dropout is off: each
process draws its own masks.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from demo.synthetic import chat_example, ticket_examples, ticket_texts
from demo.tinymodel import make_tiny_model
from runner.core.trainconfig import Progress, TrainConfig, TrainingCancelled
from runner.ml import checkpoints
from runner.ml.distributed import DistributedTrainingFailed, launch
from runner.ml.loop import TrainResult, train

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."
CONFIG = {
    "epochs": "2",
    "lr": "3e-3",
    "lora_r": "8",
    "lora_dropout": "0.0",
    "max_len": "256",
    "batch_tokens": "512",
    "warmup_ratio": "0.1",
    "eval_every_steps": "4",
    "early_stopping_patience": "0",
    "checkpoint_every": "0",
}
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-3


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = ticket_texts(1000, seed=99) + [SYSTEM]
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts, hidden_size=64)


@pytest.fixture(scope="module")
def data() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    train_set = [chat_example(SYSTEM, t, q) for t, q in ticket_examples(60, seed=1)]
    eval_set = [chat_example(SYSTEM, t, q) for t, q in ticket_examples(12, seed=2)]
    return train_set, eval_set


def config_for(model_dir: Path, **changes: str) -> TrainConfig:
    return TrainConfig.from_overrides(TrainConfig(base_model=str(model_dir)), {**CONFIG, **changes})


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def rank_pids(workdir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(workdir.glob("rank-*.pid"))]


def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch(
    model_dir: Path, data: Any, tmp_path: Path
) -> None:
    # One process, two micro-batches per step; two processes, one micro-batch each.
    single = train(config_for(model_dir, grad_accum_steps="2"), *data, tmp_path / "one")
    seen: list[Progress] = []
    double: TrainResult = launch(
        config_for(model_dir, procs="2"),
        *data,
        tmp_path / "two",
        workdir=tmp_path / "work",
        progress=seen.append,
    )

    assert double.processes == 2 and len(double.peak_memory_per_process) == 2
    assert double.total_steps == single.total_steps and double.steps == single.steps >= 8
    assert [p.step for p in seen] == list(range(1, double.steps + 1))  # rank 0 alone reports
    assert (double.train_tokens, double.target_tokens) == (single.train_tokens, single.target_tokens)
    for (step, mine), (their_step, theirs) in zip(double.loss_curve, single.loss_curve, strict=True):
        assert step == their_step and math.isclose(mine, theirs, rel_tol=LOSS_RTOL), (step, mine, theirs)
    for (_, mine), (_, theirs) in zip(double.eval_losses, single.eval_losses, strict=True):
        assert math.isclose(mine, theirs, rel_tol=LOSS_RTOL)
    one = load_file(single.out_dir / "adapter_model.safetensors")
    two = load_file(double.out_dir / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    for name, tensor in two.items():
        torch.testing.assert_close(tensor, one[name], rtol=0, atol=WEIGHT_ATOL)
    pids = rank_pids(tmp_path / "work")
    assert len(set(pids)) == 2 and os.getpid() not in pids  # really two other processes
    assert not any(alive(pid) for pid in pids)


def test_sigterm_to_the_group_stops_every_rank_at_one_step_with_a_checkpoint(
    model_dir: Path, data: Any, tmp_path: Path
) -> None:
    group: list[int] = []

    def cancel_at_step_3(progress: Progress) -> None:
        if progress.step == 3:
            os.killpg(group[0], signal.SIGTERM)  # what stopping the job's process group does

    folder = tmp_path / "checkpoint"
    with pytest.raises(TrainingCancelled, match="stopped by SIGTERM at step") as stopped:
        launch(
            config_for(model_dir, procs="2"),
            *data,
            tmp_path / "out",
            workdir=tmp_path / "work",
            checkpoint_dir=folder,
            progress=cancel_at_step_3,
            on_started=group.append,
        )
    summary = checkpoints.summary(folder)
    assert summary is not None and summary["step"] >= 3 and f"step {summary['step']} " in str(stopped.value)
    assert len(checkpoints.load(folder)["rng"]) == 2  # each rank's generators, to resume both
    assert not (tmp_path / "out").exists()
    assert not any(alive(pid) for pid in [*group, *rank_pids(tmp_path / "work")])


def test_a_rank_killed_outright_fails_the_run_and_writes_nothing(
    model_dir: Path, data: Any, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"

    def kill_rank_1_at_step_2(progress: Progress) -> None:
        if progress.step == 2:
            os.kill(rank_pids(workdir)[1], signal.SIGKILL)  # the OOM killer's way

    with pytest.raises(DistributedTrainingFailed, match="torchrun exited with status"):
        launch(
            config_for(model_dir, procs="2"),
            *data,
            tmp_path / "out",
            workdir=workdir,
            progress=kill_rank_1_at_step_2,
        )
    assert not (tmp_path / "out").exists()
    assert not any(alive(pid) for pid in rank_pids(workdir))
