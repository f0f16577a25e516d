"""Checkpoints on CPU with the tiny 4-bit model: a run paused (or killed after a checkpoint) and resumed
ends bit-for-bit where an uninterrupted run ends; checkpoints are atomic and refuse other settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from demo.synthetic import chat_example, ticket_examples, ticket_texts
from demo.tinymodel import make_tiny_model
from runner.core.trainconfig import TrainConfig, TrainingCancelled, TrainingPaused
from runner.ml import checkpoints
from runner.ml.loop import TrainResult, train

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."
# Dropout on, so the torch generator matters; eval every 4 steps with patience, so early-stopping
# bookkeeping and the best adapter must survive the resume; 2 epochs, so the data position does.
CONFIG = {
    "epochs": "2",
    "lr": "3e-3",
    "lora_r": "8",
    "lora_dropout": "0.1",
    "max_len": "256",
    "batch_tokens": "256",
    "warmup_ratio": "0.1",
    "gradient_checkpointing": "false",
    "eval_every_steps": "4",
    "early_stopping_patience": "5",
    "checkpoint_every": "3",
}


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


@pytest.fixture(scope="module")
def uninterrupted(model_dir: Path, data: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(config_for(model_dir), *data, tmp_path_factory.mktemp("whole") / "out")


def assert_same_run(resumed: TrainResult, whole: TrainResult) -> None:
    assert resumed.loss_curve == whole.loss_curve  # exactly: floats compared bit for bit
    assert resumed.eval_losses == whole.eval_losses
    assert (resumed.steps, resumed.best_step, resumed.best_eval_loss) == (
        whole.steps,
        whole.best_step,
        whole.best_eval_loss,
    )
    assert (resumed.train_tokens, resumed.target_tokens) == (whole.train_tokens, whole.target_tokens)
    assert resumed.checkpoints == whole.checkpoints
    mine = load_file(resumed.out_dir / "adapter_model.safetensors")
    theirs = load_file(whole.out_dir / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert torch.equal(tensor, theirs[name]), name


def test_a_paused_and_resumed_run_ends_bit_for_bit_where_an_uninterrupted_run_ends(
    model_dir: Path, data: Any, tmp_path: Path, uninterrupted: TrainResult
) -> None:
    assert uninterrupted.steps >= 10  # enough to pause in the middle of the first epoch
    polls = 0

    def pause_at_step_5() -> bool:
        nonlocal polls
        polls += 1
        return polls == 6  # polled before each step: after 5 steps

    saved: list[tuple[int, float | None]] = []
    folder = tmp_path / "checkpoint"
    with pytest.raises(TrainingPaused) as paused:
        train(
            config_for(model_dir),
            *data,
            tmp_path / "out",
            checkpoint_dir=folder,
            should_pause=pause_at_step_5,
            on_checkpoint=lambda step, loss: saved.append((step, loss)),
        )
    assert paused.value.step == 5
    assert [step for step, _ in saved] == [3, 5]  # every 3 steps, and on pause
    assert all(loss is not None and loss > 0 for _, loss in saved)
    assert checkpoints.summary(folder) == {"step": 5, "eval_loss": saved[-1][1], "epoch": 1}
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "checkpoint.pt"]  # no staging

    resumed = train(config_for(model_dir), *data, tmp_path / "out", checkpoint_dir=folder)

    assert resumed.resumed_from_step == 5
    assert_same_run(resumed, uninterrupted)
    # The pause's checkpoint is not one of the run's: where it was paused changes nothing.
    assert resumed.checkpoints == uninterrupted.checkpoints
    assert [step for step, _ in resumed.checkpoints][:2] == [3, 6]


def test_a_run_stopped_after_a_checkpoint_goes_on_from_it_across_an_epoch_boundary(
    model_dir: Path, data: Any, tmp_path: Path, uninterrupted: TrainResult
) -> None:
    """As when the worker dies: the run stops at some step, and the next try starts from the last
    checkpoint (steps after it are done again) — here the checkpoint lies in the second epoch."""
    per_epoch = uninterrupted.total_steps // 2
    stop_after = per_epoch + 4
    steps_seen = 0

    def stop() -> bool:
        nonlocal steps_seen
        steps_seen += 1
        return steps_seen > stop_after

    folder = tmp_path / "checkpoint"
    with pytest.raises(TrainingCancelled):
        train(config_for(model_dir), *data, tmp_path / "first", should_stop=stop, checkpoint_dir=folder)
    summary = checkpoints.summary(folder)
    assert summary is not None and summary["step"] == stop_after // 3 * 3 and summary["epoch"] == 2

    resumed = train(config_for(model_dir), *data, tmp_path / "out", checkpoint_dir=folder)

    assert resumed.resumed_from_step == summary["step"]
    assert_same_run(resumed, uninterrupted)


def test_a_checkpoint_refuses_a_run_with_other_settings(model_dir: Path, data: Any, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    with pytest.raises(TrainingPaused):
        train(
            config_for(model_dir), *data, tmp_path / "out", checkpoint_dir=folder, should_pause=lambda: True
        )
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        train(config_for(model_dir, lr="1e-3"), *data, tmp_path / "out", checkpoint_dir=folder)
    # How often to checkpoint or how patient to be may change between tries.
    result = train(
        config_for(model_dir, checkpoint_every="0", max_steps="2"),
        *data,
        tmp_path / "out2",
        checkpoint_dir=tmp_path / "other",
    )
    assert result.steps == 2 and not (tmp_path / "other").exists()


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    checkpoints.save(folder, {"step": 1, "weights": torch.ones(3)}, {"step": 1})

    class Unsaveable:
        def __reduce__(self) -> Any:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoints.save(folder, {"step": 2, "weights": Unsaveable()}, {"step": 2})
    loaded = checkpoints.load(folder)
    assert loaded is not None and loaded["step"] == 1 and torch.equal(loaded["weights"], torch.ones(3))
    assert checkpoints.summary(folder) == {"step": 1}
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "checkpoint.pt"]


def test_the_checkpoint_picker_keeps_the_adapter_of_the_lowest_eval_loss_or_the_last(
    model_dir: Path, data: Any, tmp_path: Path, uninterrupted: TrainResult
) -> None:
    evaluated = dict(uninterrupted.eval_losses) | {s: loss for s, loss in uninterrupted.checkpoints if loss}
    assert [step for step, _ in uninterrupted.checkpoints] == list(range(3, uninterrupted.steps, 3))
    assert all(loss is not None for _, loss in uninterrupted.checkpoints)
    best = min(evaluated, key=lambda step: (evaluated[step], step))
    assert (uninterrupted.best_step, uninterrupted.best_eval_loss) == (best, evaluated[best])

    last = train(config_for(model_dir, keep_best="false"), *data, tmp_path / "last")
    assert last.best_step == last.steps and last.loss_curve == uninterrupted.loss_curve
    if best != last.steps:  # the last step's adapter is not the best one: the files differ
        kept = load_file(uninterrupted.out_dir / "adapter_model.safetensors")
        final = load_file(last.out_dir / "adapter_model.safetensors")
        assert any(not torch.equal(kept[name], final[name]) for name in kept)
