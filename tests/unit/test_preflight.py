"""The preflight estimate: tokens from the records, throughput from past runs (or the default scaled
by the model's size), time, GPU-hours and memory from the base model's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.core.trainconfig import TrainConfig
from runner.jobs import preflight

SMOL = {  # SmolLM2-135M's shape
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


def record(chars: int) -> dict:
    return {"messages": [{"role": "user", "content": "x" * (chars - 8)}]}


def config(**changes) -> TrainConfig:
    return TrainConfig.from_overrides(
        TrainConfig(base_model="smollm2-135m"), {k: str(v) for k, v in changes.items()}
    )


def test_tokens_come_from_the_characters_cut_at_max_len_times_the_epochs() -> None:
    records = [record(400), record(4000), record(40_000)]
    assert preflight.example_tokens(records, max_len=2048) == [100, 1000, 2048]
    found = preflight.estimate(config(epochs=3, max_len=2048), records)
    assert (found.examples, found.tokens) == (3, 3 * 3148)
    capped = preflight.estimate(config(epochs=3, max_len=2048, max_steps=1, batch_tokens=4096), records)
    assert capped.tokens == 4096
    # Epochs and batch size left to the rule: the estimate applies the rule (3 epochs under 1,000
    # examples; an epoch's tokens over at least 16 steps).
    auto = preflight.estimate(config(epochs=0, max_len=2048, batch_tokens=0), records)
    assert auto.tokens == 3 * 3148
    auto_capped = preflight.estimate(config(epochs=0, max_len=2048, batch_tokens=0, max_steps=2), records)
    assert auto_capped.tokens == 2 * -(-3148 // 16)


def test_measured_throughput_wins_over_the_default_and_sets_time_and_gpu_hours() -> None:
    records = [record(4000)] * 100  # 100,000 tokens an epoch
    history = [{"tokens_per_s": 1000.0}, {"tokens_per_s": 3000.0}, {"tokens_per_s": 2000.0}, {"steps": 3}]
    found = preflight.estimate(config(epochs=2, procs=2), records, history=history)
    assert (found.tokens_per_s, found.throughput_source) == (2000.0, "measured (3 runs)")
    assert found.seconds == pytest.approx(preflight.STARTUP_S + 200_000 / 2000)
    assert found.gpu_hours == pytest.approx(found.seconds * 2 / 3600, abs=1e-4)
    # On two nodes the same throughput costs every process's device: twice the GPU-hours.
    spread = preflight.estimate(config(epochs=2, procs=2, nodes=2), records, history=history)
    assert spread.seconds == found.seconds and spread.procs == 4
    assert spread.gpu_hours == pytest.approx(2 * found.gpu_hours, abs=1e-4)
    # Their time outside the training loop (loading, evaluating, saving) replaces the default.
    timed = [{"tokens_per_s": 2000.0, "train_tokens": 20_000, "wall_time_s": 22.0}]
    assert preflight.estimate(config(epochs=2), records, history=timed).seconds == pytest.approx(12 + 100)
    default = preflight.estimate(config(epochs=2), records)
    assert (default.tokens_per_s, default.throughput_source) == (preflight.DEFAULT_TOKENS_PER_S, "default")


def test_the_default_throughput_scales_with_the_model_size(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOL))
    shape = preflight.model_shape(tmp_path / "config.json")
    assert shape is not None
    small = preflight.estimate(config(), [record(400)], shape=shape)
    big_shape = {**shape, "hidden": shape["hidden"] * 4, "intermediate": shape["intermediate"] * 4}
    big = preflight.estimate(config(), [record(400)], shape=big_shape)
    assert small.params is not None and 100e6 < small.params < 170e6  # ~135M
    assert big.params is not None and big.params > 5 * small.params
    assert big.tokens_per_s < small.tokens_per_s / 5


def test_memory_is_smaller_in_4_bit_and_grows_with_the_micro_batch(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(SMOL))
    shape = preflight.model_shape(tmp_path / "config.json")
    assert shape is not None
    four_bit = preflight.memory_bytes(config(), shape, 512)
    sixteen = preflight.memory_bytes(config(quantize="false"), shape, 512)
    bigger_batch = preflight.memory_bytes(config(batch_tokens=65536), shape, 512)
    no_checkpointing = preflight.memory_bytes(config(gradient_checkpointing="false"), shape, 512)
    assert 50 * 2**20 < four_bit < sixteen
    assert bigger_batch > four_bit and no_checkpointing > four_bit
    assert preflight.estimate(config(), [record(400)], shape=shape).memory_bytes == (
        preflight.memory_bytes(config(), shape, 100)
    )


def test_a_model_shape_needs_a_readable_config(tmp_path: Path) -> None:
    assert preflight.model_shape(tmp_path / "missing.json") is None
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    assert preflight.model_shape(tmp_path / "config.json") is None
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert preflight.local_config_json("model", tmp_path) == tmp_path / "model" / "config.json"
    assert preflight.local_config_json(str(tmp_path / "model"), Path("/nowhere")) is not None
    assert preflight.local_config_json("org/name", tmp_path) is None


def test_the_throughput_source_names_the_hardware_class_and_the_queue_is_kept() -> None:
    records = [record(4000)] * 10
    found = preflight.estimate(
        config(), records, history=[{"tokens_per_s": 900.0}], hardware_class="a10", queue="train-a10"
    )
    assert found.throughput_source == "measured on a10 (1 run)"
    assert (found.hardware_class, found.queue, found.procs) == ("a10", "train-a10", 1)
    assert found.to_dict()["queue"] == "train-a10"
    two = preflight.estimate(config(), records, history=[{"tokens_per_s": 900.0}] * 2)
    assert two.throughput_source == "measured (2 runs)" and two.hardware_class is None
