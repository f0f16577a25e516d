"""Label choice against free generation: what a classification baseline costs, on the tiny model.

Evaluation scores a classification project's prompted baselines by choosing among the labels
(``runner.ml.inference.choose_labels``: the prompt once, then every label on its key/value cache) instead of
generating an answer and parsing it (``runner.ml.inference.generate``, batch 16, ``max_new_tokens``
16, evaluation's values). This measures both on the same held-out tickets with the same loaded base
model (a tiny random Llama, the learning test's width 256, 4-bit NF4 unless ``--no-quant``), zero-shot
and with the k-shot prompt evaluation uses (2 train examples per label), after an untimed warm-up.
Repeats alternate the order of the modes. Reported: wall seconds per pass and examples per second.

    .venv/bin/python bench/label_choice.py                   # ~1-2 min on 2 idle cores
    .venv/bin/python bench/label_choice.py --examples 50 --repeats 2 --json label_choice.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."
LABELS = ["account", "billing", "shipping", "technical"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="held-out tickets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-quant", action="store_true", help="load the base unquantized")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    warnings.filterwarnings("ignore")

    import torch
    from transformers.utils import logging as hf_logging

    from demo.synthetic import ticket_examples, ticket_texts
    from demo.tinymodel import make_tiny_model
    from runner.ml.baselines import FEW_SHOT_PER_LABEL, Solved, few_shot_examples, with_examples
    from runner.ml.inference import choose_labels, generate, load_for_inference

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(
            Path(tmp) / "model", ticket_texts(2000) + [SYSTEM], hidden_size=256, num_layers=2, num_heads=4
        )
        model, tokenizer = load_for_inference(str(model_dir), None, quantize=not args.no_quant)
        train = [Solved(t, label) for t, label in ticket_examples(200, seed=2)]
        shots = few_shot_examples(train, per_label=FEW_SHOT_PER_LABEL, seed=0)
        held = [
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": t}]
            for t, _ in ticket_examples(args.examples, seed=3)
        ]
        prompts = {"zero-shot": held, "k-shot": [with_examples(c, shots) for c in held]}

        def label_choice(conversations: list[Any]) -> None:
            choose_labels(model, tokenizer, conversations, LABELS)

        def free_generation(conversations: list[Any]) -> None:
            generate(model, tokenizer, conversations, max_new_tokens=16, batch_size=16)

        modes = {
            f"{how} {prompt}": (run, conversations)
            for prompt, conversations in prompts.items()
            for how, run in (("label choice", label_choice), ("generation", free_generation))
        }
        for run, conversations in modes.values():
            run(conversations[:8])  # warm-up
        times: dict[str, list[float]] = {name: [] for name in modes}
        for repeat in range(args.repeats):
            order = list(modes) if repeat % 2 == 0 else list(reversed(modes))
            for name in order:
                run, conversations = modes[name]
                began = time.perf_counter()
                run(conversations)
                times[name].append(time.perf_counter() - began)
    figures = {
        name: {
            "median_s": round(statistics.median(values), 2),
            "examples_per_s": round(args.examples / statistics.median(values), 1),
        }
        for name, values in times.items()
    }
    figures["setup"] = {
        "examples": args.examples,
        "repeats": args.repeats,
        "threads": args.threads,
        "quantized": not args.no_quant,
        "labels": len(LABELS),
        "k_shot_examples": len(shots),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
