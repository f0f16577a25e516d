"""QLoRA training on CPU, for real: config checks, label masking, packing, and a tiny model that learns.

The expensive part (make a tiny Llama, train a 4-bit LoRA adapter on synthetic support tickets) runs
once in the module-scoped `trained` fixture; under pytest-xdist the first worker to need it trains and
the others wait for its files (a lock in the session's shared temp folder), so it never runs twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from bitsandbytes.functional import has_avx512bf16
from peft.tuners import lora
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from demo.synthetic import QUEUES, chat_example, ticket_examples, ticket_texts
from demo.tinymodel import make_tiny_model
from runner.core.trainconfig import (
    MIN_STEPS_PER_EPOCH,
    Progress,
    TrainConfig,
    TrainingCancelled,
    auto_batch_rows,
    auto_epochs,
    auto_lr,
)
from runner.ml.fastlora import CpuDropout
from runner.ml.inference import generate, load_for_inference
from runner.ml.loop import target_loss_sum, train
from runner.ml.model import (
    FALLBACK_CHAT_TEMPLATE,
    load_base_model,
    load_tokenizer,
    parameter_count,
    prepare_model,
)
from runner.ml.packing import IGNORE_INDEX, collate_rows, encode_chat, pack_best_fit
from tests.training_support import base_weights_fingerprint

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."
# Why these settings: see runner/tinymodel.py. Width 256 keeps the word embeddings of the ~230-word
# vocabulary linearly independent, and the (random, so meaningless) embeddings train in full next to the
# LoRA adapters. 400 tickets x 3 epochs (~90 steps of ~1k tokens, ~15 s on 2 cores): held-out accuracy
# 1.0 for each of model seeds 0-3; with 300 tickets it was 0.93-1.0.
MODEL_ARGS: dict[str, Any] = {"hidden_size": 256, "num_layers": 2, "num_heads": 4}
CONFIG = {
    "epochs": 3,
    "lr": 3e-3,  # tiny random base + few steps: far above the 2e-4 used for real models
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "modules_to_save": "embed_tokens",
    "max_len": 512,
    "batch_tokens": 1024,  # ~12 tickets per step, ~30 steps per epoch
    "warmup_ratio": 0.05,
    "gradient_checkpointing": False,
    "early_stopping_patience": 2,
}
N_TRAIN, N_EVAL, N_TEST = 400, 40, 60


def conversation(ticket: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket}]


def accuracy(model: Any, tokenizer: Any, tickets: list[tuple[str, str]]) -> float:
    answers = generate(model, tokenizer, [conversation(t) for t, _ in tickets], max_new_tokens=3)
    return sum(a.text == queue for a, (_, queue) in zip(answers, tickets, strict=True)) / len(tickets)


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run this module's torch work on one thread (restored afterwards).

    The tiny model's matmuls are too small to gain from more, and on a busy machine OpenMP threads
    spin-wait: with 2 threads on 2 shared cores the training fixture took 108-143 s, with 1 thread 19-31 s.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = ticket_texts(2000, seed=99) + [SYSTEM]
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts, **MODEL_ARGS)


@dataclass(frozen=True)
class Trained:
    model_dir: Path
    out_dir: Path
    fingerprint_before: str
    progress: list[dict[str, Any]]


def _train_once(folder: Path) -> Trained:
    model_dir, out_dir, record = folder / "model", folder / "adapter", folder / "run.json"
    if record.exists():
        data = json.loads(record.read_text())
        return Trained(model_dir, out_dir, data["fingerprint_before"], data["progress"])
    make_tiny_model(model_dir, ticket_texts(2000, seed=99) + [SYSTEM], **MODEL_ARGS)
    fingerprint = base_weights_fingerprint(model_dir)
    config = TrainConfig.from_overrides(
        TrainConfig(base_model=str(model_dir)), {k: str(v) for k, v in CONFIG.items()}
    )
    events: list[Progress] = []
    train(
        config,
        [chat_example(SYSTEM, t, q) for t, q in ticket_examples(N_TRAIN, seed=1)],
        [chat_example(SYSTEM, t, q) for t, q in ticket_examples(N_EVAL, seed=2)],
        out_dir,
        progress=events.append,
    )
    progress = [vars(e) for e in events]
    record.write_text(json.dumps({"fingerprint_before": fingerprint, "progress": progress}))
    return Trained(model_dir, out_dir, fingerprint, progress)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One real 4-bit QLoRA run on CPU, shared by every test (and every xdist worker) of the session."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "ftbot-training"  # this session's, shared
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("ftbot-training")
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker trains; the others wait, then read its files
        try:
            return _train_once(folder)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def held_out() -> list[tuple[str, str]]:
    return ticket_examples(N_TEST, seed=3)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def test_default_config_is_valid() -> None:
    TrainConfig(base_model="org/model").validate()


def test_validate_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        TrainConfig(
            base_model=" ",
            epochs=-1,
            lr=-0.1,
            lora_r=0,
            lora_dropout=1.0,
            max_len=4096,
            batch_tokens=1024,
            warmup_ratio=1.5,
            weight_decay=-0.1,
            early_stopping_patience=-1,
        )
    message = str(caught.value)
    expected = [
        "base_model is empty",
        "epochs must be 0 or more",
        "lr must be in [0, 1]",
        "lora_r must be at least 1",
        "lora_dropout must be in [0, 1)",
        "batch_tokens (1024) must be at least max_len (4096)",
        "warmup_ratio must be in [0, 1)",
        "weight_decay must be 0 or more",
        "early_stopping_patience must be 0 or more",
    ]
    for fragment in expected:
        assert fragment in message
    assert f"({len(expected)} problems)" in message


def test_from_overrides_parses_each_field_type() -> None:
    base = TrainConfig(base_model="org/model")
    config = TrainConfig.from_overrides(
        base,
        {
            "epochs": "5",
            "lr": "1e-4",
            "quantize": "false",
            "gradient_checkpointing": "yes",
            "target_modules": "q_proj",
        },
    )
    assert (config.epochs, config.lr, config.quantize, config.gradient_checkpointing) == (
        5,
        1e-4,
        False,
        True,
    )
    assert config.target_modules == "q_proj"
    assert base.epochs == 0 and base.quantize, "the base config must not change"  # 0: chosen by the rule
    assert TrainConfig.from_overrides(base, {}) == base


def test_from_overrides_reports_unknown_keys_bad_values_and_invalid_results_together() -> None:
    base = TrainConfig(base_model="org/model")
    with pytest.raises(ValueError) as caught:
        TrainConfig.from_overrides(
            base,
            {"epoch": "3", "lr": "fast", "quantize": "maybe", "lora_r": "0", "max_len": "1.5", "xyz": "1"},
        )
    message = str(caught.value)
    assert "unknown key 'epoch' (did you mean epochs?)" in message
    assert "unknown key 'xyz'; known keys: base_model, epochs" in message
    assert "lr='fast': expected a number" in message
    assert "quantize='maybe': expected true or false" in message
    assert "max_len='1.5': expected a whole number" in message
    assert "lora_r must be at least 1, got 0" in message
    assert "(6 problems)" in message


# --------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------


def test_ticket_examples_are_deterministic_balanced_and_varied() -> None:
    tickets = ticket_examples(400, seed=5)
    assert tickets == ticket_examples(400, seed=5)
    assert tickets != ticket_examples(400, seed=6)
    assert sorted({q for _, q in tickets}) == sorted(QUEUES)
    assert all(sum(q == queue for _, q in tickets) == 100 for queue in QUEUES)
    words = [len(t.split()) for t, _ in tickets]
    assert min(words) < 15 and max(words) > 90, "short and long tickets"
    assert len({t for t, _ in tickets}) == len(tickets), "no duplicates"
    example = chat_example("s", "u", "a")
    assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]


# --------------------------------------------------------------------------------------------------
# Tokenization, masking, packing
# --------------------------------------------------------------------------------------------------


def test_tiny_model_loads_offline_with_its_chat_template(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.hidden_size == 256 and len(tokenizer) <= model.config.vocab_size
    prompt = str(
        tokenizer.apply_chat_template(
            conversation("my parcel is lost"), tokenize=False, add_generation_prompt=True
        )
    )
    assert prompt.endswith("<|assistant|>\n")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids and ids[0] == tokenizer.bos_token_id
    assert tokenizer.convert_tokens_to_ids("shipping") != tokenizer.unk_token_id


def test_labels_cover_exactly_the_assistant_turns(tiny_model: Path) -> None:
    tokenizer = load_tokenizer(tiny_model)
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "my invoice was charged twice."},
        {"role": "assistant", "content": "billing"},
        {"role": "user", "content": "and my parcel is lost in transit"},
        {"role": "assistant", "content": "shipping account"},
    ]
    encoded = encode_chat(tokenizer, messages)
    targets = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.convert_ids_to_tokens(targets) == [
        "billing",
        "<|end|>",
        "shipping",
        "account",
        "<|end|>",
    ]
    assert all(
        label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels, strict=True)
    )
    # The prompt is never a target, not even the queue names that the system prompt lists.
    prompt_len = len(
        tokenizer(
            tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
    )
    assert set(encoded.labels[:prompt_len]) == {IGNORE_INDEX}
    # Truncation keeps the prefix; the fallback template (for tokenizers without one) marks content + EOS.
    assert encode_chat(tokenizer, messages, max_len=10).input_ids == encoded.input_ids[:10]
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    fallback = encode_chat(tokenizer, messages[:3])
    fallback_targets = [
        t for t, label in zip(fallback.input_ids, fallback.labels, strict=True) if label != IGNORE_INDEX
    ]
    assert tokenizer.convert_ids_to_tokens(fallback_targets) == ["billing", "<|end|>"]


def test_best_fit_packing_places_every_sequence_once_without_overflow() -> None:
    lengths = [200, 17, 180, 60, 60, 256, 33, 120, 136, 90, 5, 250]
    rows = pack_best_fit(lengths, 256)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 256 for row in rows)
    assert len(rows) == -(-sum(lengths) // 256), "optimal here: as many rows as the tokens need"
    with pytest.raises(ValueError):
        pack_best_fit([300], 256)


def test_4bit_layers_compute_in_the_dtype_chosen_for_the_device(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 on a CUDA device that has it: the quantization config carries the choice to bitsandbytes."""
    from runner.ml import model as model_module

    monkeypatch.setattr(model_module, "compute_dtype", lambda device: torch.bfloat16)
    loaded = load_base_model(tiny_model, quantize=True)
    assert loaded.config.quantization_config.bnb_4bit_compute_dtype == torch.bfloat16


def test_packed_rows_lose_exactly_what_the_sequences_lose_alone(tiny_model: Path) -> None:
    """No cross-sequence attention: the loss of a packed batch is the sum of per-sequence losses."""
    tokenizer = load_tokenizer(tiny_model)
    model = load_base_model(tiny_model, quantize=True)
    examples = [
        encode_chat(tokenizer, chat_example(SYSTEM, t, q)["messages"]) for t, q in ticket_examples(7, seed=4)
    ]
    lengths = [len(e.input_ids) for e in examples]
    row_len = max(lengths) + 40
    rows = pack_best_fit(lengths, row_len)
    assert any(len(row) > 1 for row in rows), "the test needs rows holding several sequences"
    pad = int(tokenizer.pad_token_id)
    with torch.no_grad():
        packed, packed_count = target_loss_sum(model, collate_rows(examples, rows, row_len, pad))
        alone = [
            target_loss_sum(model, collate_rows(examples, [[i]], lengths[i], pad))
            for i in range(len(examples))
        ]
        # Control: the same rows with positions running on across sequences (naive concatenation).
        batch = collate_rows(examples, rows, row_len, pad)
        naive = replace(batch, position_ids=torch.arange(row_len).expand(len(rows), row_len))
        leaky, _ = target_loss_sum(model, naive)
    assert packed_count == sum(n for _, n in alone) == sum(e.target_count for e in examples)
    total_alone = sum(float(loss) for loss, _ in alone)
    assert float(packed) == pytest.approx(total_alone, rel=1e-4)
    assert abs(float(leaky) - total_alone) > 1e-2 * total_alone, "control: attention across sequences shows"


def test_cpu_dropout_matches_dropout_in_distribution_scale_and_gradient() -> None:
    torch.manual_seed(0)
    dropout = CpuDropout(0.1)
    x = torch.ones(600_000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(0.9, abs=0.003)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad != 0, kept)
    # Each of the four 16-bit lanes drawn per 64-bit word is uniform, so no stripe pattern either.
    assert all(abs(float(kept[lane::4].float().mean()) - 0.9) < 0.005 for lane in range(4))
    dropout.eval()
    assert dropout(x) is x
    with pytest.raises(ValueError):
        CpuDropout(1.0)


def _lora_grads(model: Any, batch: Any, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and adapter gradients of one forward/backward (dropout masks drawn from ``seed``)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, _ = target_loss_sum(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return float(loss), grads


def _training_batch(tiny_model: Path) -> Any:
    tokenizer = load_tokenizer(tiny_model)
    examples = [
        encode_chat(tokenizer, chat_example(SYSTEM, t, q)["messages"]) for t, q in ticket_examples(6, seed=8)
    ]
    lengths = [len(e.input_ids) for e in examples]
    row_len = max(lengths) + 16
    return collate_rows(examples, pack_best_fit(lengths, row_len), row_len, int(tokenizer.pad_token_id))


def test_fast_lora_steps_compute_what_peft_computes(tiny_model: Path) -> None:
    """runner.ml.fastlora's fused forward gives PEFT's losses and gradients (4-bit base, dropout on)."""
    config = TrainConfig(base_model=str(tiny_model), lora_r=8, lora_alpha=16, lora_dropout=0.1)
    cpu = torch.device("cpu")
    fast, reference = prepare_model(config, cpu), prepare_model(config, cpu, fast=False)
    assert any(isinstance(m, CpuDropout) for m in fast.modules())
    # The reference keeps PEFT's forward; only its dropouts draw the same masks as the fast model's.
    for module in reference.modules():
        if isinstance(module, lora.LoraLayer):
            for name in module.lora_dropout:
                module.lora_dropout[name] = CpuDropout(config.lora_dropout)
    # LoRA starts with B = 0; give both models the same non-zero adapters so every path carries signal.
    torch.manual_seed(1)
    adapters = {k: torch.randn_like(v) * 0.05 for k, v in get_peft_model_state_dict(fast).items()}
    set_peft_model_state_dict(fast, adapters)
    set_peft_model_state_dict(reference, adapters)
    fast.train()
    reference.train()
    batch = _training_batch(tiny_model)
    loss, grads = _lora_grads(fast, batch, seed=5)
    expected_loss, expected = _lora_grads(reference, batch, seed=5)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert grads.keys() == expected.keys() and len(grads) == 2 * 7 * MODEL_ARGS["num_layers"]  # A, B each
    # Equal up to float32 rounding (the dropout rescale is folded into a different multiplication).
    errors = {n: float((g - expected[n]).norm() / expected[n].norm()) for n, g in grads.items()}
    assert max(errors.values()) < 1e-5, errors
    _, other_masks = _lora_grads(fast, batch, seed=6)
    assert any(not torch.allclose(g, other_masks[n]) for n, g in grads.items()), "control: dropout is on"


def _grads_around_an_eval_pass(model: Any, batch: Any) -> tuple[dict[str, torch.Tensor], ...]:
    """Adapter gradients of the same batch before and after one evaluation pass (eval mode, no grad)."""
    model.train()
    _, before = _lora_grads(model, batch, seed=0)
    model.eval()
    with torch.no_grad():
        target_loss_sum(model, batch)
    model.train()
    _, after = _lora_grads(model, batch, seed=0)
    return before, after


def test_evaluating_between_epochs_keeps_gradients_through_4bit_layers(tiny_model: Path) -> None:
    """An eval pass must not switch bitsandbytes to its CPU inference layout, which has no backward."""
    config = TrainConfig(base_model=str(tiny_model), lora_r=8, lora_alpha=16, lora_dropout=0.0)
    batch = _training_batch(tiny_model)
    before, after = _grads_around_an_eval_pass(prepare_model(config, torch.device("cpu")), batch)
    assert before.keys() == after.keys()
    for name, grad in before.items():
        assert torch.allclose(after[name], grad, rtol=1e-5, atol=1e-8), name
    if has_avx512bf16():  # control, where bitsandbytes has the inference layout: PEFT alone loses them
        plain = prepare_model(config, torch.device("cpu"), fast=False)
        before, after = _grads_around_an_eval_pass(plain, batch)
        assert any(not torch.allclose(after[n], g, atol=1e-6) for n, g in before.items())


# --------------------------------------------------------------------------------------------------
# The real QLoRA run
# --------------------------------------------------------------------------------------------------


def test_training_writes_a_self_describing_adapter_folder(trained: Trained) -> None:
    names = {p.name for p in trained.out_dir.iterdir()}
    for name in ("adapter_model.safetensors", "adapter_config.json", "train_config.json", "metrics.json"):
        assert name in names
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    assert (
        "chat_template.jinja" in names
        or "chat_template" in (trained.out_dir / "tokenizer_config.json").read_text()
    )
    resolved = json.loads((trained.out_dir / "train_config.json").read_text())
    assert resolved["base_model"] == str(trained.model_dir) and resolved["quantize"] is True
    assert resolved["device"].split()[0] in {"cpu", "cuda"}
    assert set(resolved["libraries"]) >= {"torch", "transformers", "peft", "bitsandbytes"}
    assert "<|assistant|>" in resolved["chat_template"]
    metrics = json.loads((trained.out_dir / "metrics.json").read_text())
    assert metrics["steps"] == len(metrics["loss_curve"]) == len(trained.progress) > 0
    first, last = metrics["loss_curve"][0][1], metrics["loss_curve"][-1][1]
    assert last < first / 10
    assert metrics["eval_losses"][0][0] == 0 and metrics["best_eval_loss"] < metrics["eval_losses"][0][1] / 10
    assert metrics["tokens_per_s"] > 0 and metrics["peak_memory_bytes"] > 0 and metrics["cpu_time_s"] > 0
    assert 0.5 < metrics["base_bytes_per_param"] < 0.6, "4-bit NF4 with double quantization"
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert metrics["pad_fraction"] < 0.1, "packing leaves little padding"
    steps = [p["step"] for p in trained.progress]
    assert steps == list(range(1, len(steps) + 1))
    assert all(p["total_steps"] == metrics["total_steps"] and p["tokens_per_s"] > 0 for p in trained.progress)


def test_adapter_changed_and_base_weights_did_not(trained: Trained) -> None:
    from peft import PeftModel

    assert base_weights_fingerprint(trained.model_dir) == trained.fingerprint_before
    weights = load_file(str(trained.out_dir / "adapter_model.safetensors"))
    assert weights and all("lora_" in name or "embed_tokens" in name for name in weights), "adapter only"
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(t.abs().max() > 1e-3 for t in lora_b), "LoRA B starts at zero; training moved it"
    model = PeftModel.from_pretrained(load_base_model(trained.model_dir, quantize=True), str(trained.out_dir))
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_trained_adapter_routes_held_out_tickets_and_the_base_cannot(
    trained: Trained, held_out: list[tuple[str, str]]
) -> None:
    base, base_tokenizer = load_for_inference(str(trained.model_dir), None, quantize=True)
    tuned, tokenizer = load_for_inference(str(trained.model_dir), trained.out_dir, quantize=True)
    base_accuracy = accuracy(base, base_tokenizer, held_out)
    tuned_accuracy = accuracy(tuned, tokenizer, held_out)
    assert base_accuracy <= 0.5, f"the untrained base should be at chance or worse, got {base_accuracy}"
    assert tuned_accuracy >= 0.9, f"held-out accuracy {tuned_accuracy}"


def test_generation_is_deterministic_and_independent_of_batching(trained: Trained) -> None:
    model, tokenizer = load_for_inference(str(trained.model_dir), trained.out_dir, quantize=True)
    tickets = [conversation(t) for t, _ in ticket_examples(10, seed=8)]
    batched = generate(model, tokenizer, tickets, max_new_tokens=3, batch_size=16)
    again = generate(model, tokenizer, tickets, max_new_tokens=3, batch_size=16)
    assert [(g.text, g.prompt_tokens, g.output_tokens) for g in again] == [
        (g.text, g.prompt_tokens, g.output_tokens) for g in batched
    ]
    one_by_one = generate(model, tokenizer, tickets, max_new_tokens=3, batch_size=1)
    assert [g.text for g in one_by_one] == [g.text for g in batched]
    assert all(g.prompt_tokens > 20 and 1 <= g.output_tokens <= 3 for g in batched)


def test_should_stop_cancels_without_writing(tiny_model: Path, tmp_path: Path) -> None:
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    config = TrainConfig(
        base_model=str(tiny_model),
        quantize=False,
        epochs=5,
        max_len=512,
        batch_tokens=512,
        gradient_checkpointing=True,
        early_stopping_patience=0,
    )
    examples = [chat_example(SYSTEM, t, q) for t, q in ticket_examples(40, seed=6)]
    with pytest.raises(TrainingCancelled, match="step 2"):
        train(config, examples, [], tmp_path / "out", should_stop=should_stop)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir()), "no staging folder left behind"


def test_settings_left_out_are_chosen_from_the_model_and_the_data(tiny_model: Path, tmp_path: Path) -> None:
    config = TrainConfig(base_model=str(tiny_model), max_steps=2, gradient_checkpointing=False)
    assert (config.epochs, config.lr, config.batch_tokens) == (0, 0.0, 0)  # 0: chosen by the rule
    examples = [chat_example(SYSTEM, t, q) for t, q in ticket_examples(64, seed=1)]
    result = train(config, examples, [], tmp_path / "adapter", progress=None)
    resolved = json.loads((tmp_path / "adapter" / "train_config.json").read_text())
    base_params = result.total_params - result.trainable_params
    assert resolved["lr"] == auto_lr(base_params) == 1e-3  # a small model takes large LoRA steps
    assert resolved["epochs"] == auto_epochs(64) == 3
    rows = resolved["rows_per_micro_batch"]
    assert resolved["batch_tokens"] == rows * resolved["row_len"]
    assert resolved["steps_per_epoch"] >= min(MIN_STEPS_PER_EPOCH, 64 // rows)  # never one step an epoch
    assert result.plan == resolved["plan"]
    assert result.plan.startswith(
        f"lr 0.001 (auto) · {resolved['batch_tokens']:,} tokens/step (auto) · 3 epochs"
    )
    named = TrainConfig(
        base_model=str(tiny_model), max_steps=1, lr=3e-3, epochs=1, batch_tokens=512, max_len=512
    )
    given = train(named, examples, [], tmp_path / "given").plan
    assert given.startswith("lr 0.003 · 512 tokens/step · 1 epoch ·") and "(auto)" not in given


def test_the_rule_sizes_batches_for_steps_and_lr_for_the_model() -> None:
    assert auto_batch_rows(rows_per_epoch=100, row_len=64, grad_accum_steps=1) == 6  # 16+ steps an epoch
    assert auto_batch_rows(rows_per_epoch=10, row_len=64, grad_accum_steps=1) == 1  # as many as there are
    assert auto_batch_rows(rows_per_epoch=10**6, row_len=64, grad_accum_steps=1) == 16384 // 64
    assert auto_batch_rows(rows_per_epoch=10**6, row_len=64, grad_accum_steps=4) == 16384 // 64 // 4
    assert [auto_lr(n) for n in (134_515_008, 1_500_000_000, 7_000_000_000)] == [1e-3, 5e-4, 2e-4]
    assert [auto_epochs(n) for n in (250, 5_000, 50_000)] == [3, 2, 1]


def test_total_params_counts_tied_embeddings_once() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert parameter_count(model) == sum(p.numel() for p in model.parameters())  # each tensor once
    assert parameter_count(model) < 2 * 1000 * 32 + 32 * 64 * 3  # the shared 1000 x 32 once, not twice
