"""A real pretrained model, end to end: pulled by name, loaded in 4-bit, chat template, training, scoring.

Slow (a few minutes on two cores): ``ftbot models pull smollm2-135m`` fetches the pinned wheel
through pip, so a machine (or CI job) that keeps pip's cache (``pip cache dir``) downloads it once;
the conversion runs once per test session (into ``FTBOT_TEST_MODELS_DIR`` when set, which keeps it
across sessions; never into the repository). Under pytest-xdist the first worker to need the model
pulls it and the others wait for it (a lock in the session's shared temp folder).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from bitsandbytes.nn import Params4bit

from demo.synthetic import chat_example
from demo.tickets import tickets
from runner.core.basemodels import CARD_JSON, CATALOGUE
from runner.core.trainconfig import TrainConfig
from runner.ml.inference import answer_ids, choose_labels, load_for_inference
from runner.ml.loop import train
from runner.ml.model import base_storage, load_base_model, load_tokenizer, parameter_count

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NAME = "smollm2-135m"
SYSTEM = "route the support ticket to one queue: billing, technical, account or shipping."
LABELS = ["billing", "technical", "account", "shipping"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two shared cores ran 3x slower than one
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ftbot models pull smollm2-135m``, run as a user runs it, once for all test workers."""
    kept = os.environ.get("FTBOT_TEST_MODELS_DIR")
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every xdist worker
    models = Path(kept) if kept else shared / "pulled-models"
    models.mkdir(parents=True, exist_ok=True)
    with (shared / "pulled-models.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "models", "pull", NAME],
            env={**os.environ, "FTBOT_MODELS_DIR": str(models), "OMP_NUM_THREADS": "1"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{NAME} is ready in {models / NAME}" in done.stdout
    return models


def test_the_pulled_folder_is_a_normal_model_with_its_provenance(models_dir: Path) -> None:
    folder = models_dir / NAME
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert not [p for p in models_dir.iterdir() if p.name.startswith(f".{NAME}.")]  # no partial left
    card = json.loads((folder / CARD_JSON).read_text())
    entry = CATALOGUE[NAME]
    assert card["licence"] == "Apache-2.0" and card["origin"] == entry.origin
    assert card["source"]["wheel_sha256"] == entry.wheel_sha256
    assert card["source"]["gguf_sha256"] == entry.gguf_sha256
    assert card["conversion"]["max_abs_logit_diff"] == 0.0
    assert set(card["files_sha256"]) >= {"model.safetensors", "tokenizer.json"}
    assert entry.licence in (folder / "MODEL_CARD.md").read_text()


def test_it_loads_in_4_bit_and_renders_its_chat_template(models_dir: Path) -> None:
    folder = models_dir / NAME
    model = load_base_model(folder, quantize=True, device=torch.device("cpu"))
    quantized = [p for p in model.parameters() if isinstance(p, Params4bit)]
    assert len(quantized) == 30 * 7  # every linear layer of the 30 decoder layers
    bytes_per_param, _ = base_storage(model)
    assert 0.5 < bytes_per_param < 0.56  # NF4 with double quantization
    assert 134_000_000 < parameter_count(model) < 135_000_000  # tied embeddings counted once
    tokenizer = load_tokenizer(folder)
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "where is my parcel?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nwhere is my parcel?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qlora_trains_it_and_labels_are_scored_by_log_likelihood(models_dir: Path, tmp_path: Path) -> None:
    folder = models_dir / NAME
    rows = tickets(40, seed=3)
    examples = [chat_example(SYSTEM, r["input"], r["label"]) for r in rows]
    config = TrainConfig(
        base_model=str(folder),
        max_steps=4,
        max_len=256,
        batch_tokens=256,  # a few tickets a step: four quick steps
        lora_dropout=0.0,
        gradient_checkpointing=False,
    )
    result = train(config, examples[:32], examples[32:], tmp_path / "adapter")
    first, last = result.loss_curve[0][1], result.loss_curve[-1][1]
    assert last < first / 2, result.loss_curve
    assert result.eval_losses[-1][1] < result.eval_losses[0][1]
    assert "lr 0.001 (auto)" in result.plan  # the rule's learning rate for a model this small
    assert 134_000_000 < result.total_params - result.trainable_params < 135_000_000

    conversation = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": rows[35]["input"]}]
    model, tokenizer = load_for_inference(str(folder), tmp_path / "adapter", quantize=True)
    (choice,) = choose_labels(model, tokenizer, [conversation], LABELS)  # in 4-bit, as the baselines run
    assert set(choice.scores) == set(LABELS) and choice.text == max(LABELS, key=choice.scores.__getitem__)
    # The scores against one pass computed by hand, in float32: label choice runs the prompt once and
    # the labels on its key/value cache, and bitsandbytes' 4-bit CPU kernels take other paths for
    # other shapes (up to 0.16 apart in 4-bit, 3e-5 in float32): too loose to catch a shifted token.
    model, tokenizer = load_for_inference(str(folder), tmp_path / "adapter", quantize=False)
    (choice,) = choose_labels(model, tokenizer, [conversation], LABELS)
    for label in ("billing", "shipping"):  # the same score, computed by hand, one label at a time
        prompt, answer = answer_ids(tokenizer, conversation, label)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + answer])).logits.float()[0]
        log_probs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
        by_hand = float(log_probs.gather(-1, torch.tensor(answer).unsqueeze(-1)).sum())
        assert choice.scores[label] == pytest.approx(by_hand, abs=1e-3)
