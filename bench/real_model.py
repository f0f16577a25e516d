"""The real model on this machine: QLoRA training speed and memory, and label-choice scoring vs generation.

SmolLM2-135M-Instruct, pulled by name (``ftbot models pull smollm2-135m``, into ``--models-dir``;
a no-op once it is there), trained and evaluated on the demo's support tickets (`demo.tickets`) with
the demo's instructions:

* **Training**, 4-bit NF4 + double quantization (QLoRA) against ``quantize=false`` (plain LoRA on
  float32 weights): ``runner.ml.loop.train`` for ``--steps`` optimizer steps with ftbot's chosen
  batch size and learning rate, no dropout, no gradient checkpointing (the demo's settings). Each
  mode runs in a fresh process, so its **peak RSS** (``getrusage``, the process's high-water mark,
  loading included) is its own; **real tokens/s** is ``TrainResult.tokens_per_s`` (non-pad tokens
  per second of the training loop, evaluation excluded).
* **Scoring**, the 4-bit base model on ``--eval`` held-out tickets: label choice by log-likelihood
  (``runner.ml.inference.choose_labels``, one batched forward per ticket over the four labels), as
  the prompted baselines are scored, against free generation (``runner.ml.inference.generate``,
  batches of 16, greedy, evaluation's ``max_new_tokens`` of 16 for classification), as the
  candidate is. Examples per second of wall time, and the share of generated answers that name no
  label (what free generation costs a base model that was never told the format).

One torch thread (two threads on two busy cores ran generation 3.3x slower). The load of the machine
is printed with the figures (``os.getloadavg`` before and after): the figures scale with it.

    .venv/bin/python bench/real_model.py                       # ~10 min on 2 busy cores
    .venv/bin/python bench/real_model.py --steps 6 --eval 48 --json real.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAME = "smollm2-135m"
SYSTEM = "route the support ticket to one queue: billing, technical, account or shipping."
LABELS = ["billing", "technical", "account", "shipping"]


def _examples(n: int, seed: int) -> list[dict[str, Any]]:
    from demo.synthetic import chat_example
    from demo.tickets import tickets

    return [chat_example(SYSTEM, r["input"], r["label"]) for r in tickets(n, seed=seed)]


def train_mode(folder: Path, quantize: bool, steps: int) -> dict[str, Any]:
    """One training run in this process; its figures."""
    from runner.core.trainconfig import TrainConfig
    from runner.ml.loop import train

    config = TrainConfig(
        base_model=str(folder),
        quantize=quantize,
        max_steps=steps,
        max_len=256,
        lora_dropout=0.0,
        gradient_checkpointing=False,
    )
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        result = train(config, _examples(256, seed=1), [], Path(scratch) / "adapter")
        wall = time.perf_counter() - began
    return {
        "mode": "QLoRA 4-bit" if quantize else "LoRA float32 (quantize=false)",
        "steps": result.steps,
        "plan": result.plan,
        "real_tokens": result.train_tokens,
        "real_tokens_per_s": round(result.tokens_per_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "base_bytes_per_param": result.base_bytes_per_param,
        "first_loss": round(result.loss_curve[0][1], 3),
        "last_loss": round(result.loss_curve[-1][1], 3),
        "wall_s": round(wall, 1),
    }


def score_mode(folder: Path, n: int) -> dict[str, Any]:
    """Label choice against free generation on the same held-out tickets, 4-bit base."""
    from runner.ml.evaluation import normalise_label
    from runner.ml.inference import choose_labels, generate, load_for_inference

    examples = _examples(n, seed=2)
    conversations = [e["messages"][:-1] for e in examples]
    gold = [e["messages"][-1]["content"] for e in examples]
    model, tokenizer = load_for_inference(str(folder), None, quantize=True)
    choose_labels(model, tokenizer, conversations[:2], LABELS)  # warm-up, untimed
    began = time.perf_counter()
    choices = choose_labels(model, tokenizer, conversations, LABELS)
    choice_s = time.perf_counter() - began
    began = time.perf_counter()
    answers = generate(model, tokenizer, conversations, max_new_tokens=16, batch_size=16)
    generation_s = time.perf_counter() - began
    parsed = [normalise_label(a.text, LABELS) for a in answers]
    return {
        "examples": n,
        "label_choice_examples_per_s": round(n / choice_s, 2),
        "label_choice_accuracy": round(sum(c.text == g for c, g in zip(choices, gold, strict=True)) / n, 3),
        "generation_examples_per_s": round(n / generation_s, 2),
        "generation_accuracy": round(sum(p == g for p, g in zip(parsed, gold, strict=True)) / n, 3),
        "generation_unparsable": round(sum(p is None for p in parsed) / n, 3),
        "generated_tokens_mean": round(sum(a.output_tokens for a in answers) / n, 1),
    }


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    folder = Path(args.models_dir) / NAME
    if args.child == "score":
        figures = score_mode(folder, args.eval)
    else:
        figures = train_mode(folder, args.child == "train-4bit", args.steps)
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", default=os.environ.get("FTBOT_MODELS_DIR") or "")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per training mode")
    parser.add_argument("--eval", type=int, default=48, help="held-out tickets scored")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", choices=["train-4bit", "train-fp32", "score"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    from runner.core.config import load_settings
    from runner.jobs.basemodels import pull

    models_dir = Path(args.models_dir) if args.models_dir else load_settings().ftbot_models_dir
    pull(NAME, models_dir, on_step=lambda text: print(f"… {text}", file=sys.stderr))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TQDM_DISABLE": "1",
        "PYTHONWARNINGS": "ignore",
    }
    report: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    for child in ("train-4bit", "train-fp32", "score"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", child, "--models-dir", str(models_dir),
             "--steps", str(args.steps), "--eval", str(args.eval)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"{child} failed:\n{done.stderr[-3000:]}")
        report[child] = json.loads(done.stdout.strip().splitlines()[-1])
        print(child, json.dumps(report[child]), flush=True)
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
