"""Eval throughput: batched generation against one example at a time, on the tiny model.

Evaluation (``runner.ml.evaluation``) answers a snapshot's held-out examples with
``runner.ml.inference.generate``, batch size 16 by default. This benchmark measures what batching buys on
the machine it runs on: the same held-out synthetic support tickets, with the ticket-routing chat prompt
and evaluation's ``max_new_tokens`` for classification (16), are answered with ``batch_size`` 16 (and 32)
and with ``batch_size=1``, in the same process, by the same loaded model.

* **Models**, built here in a temporary folder: a tiny random Llama (``demo.tinymodel.make_tiny_model``
  on ``ticket_texts``, the learning test's width 256) and a LoRA adapter trained on it
  (``runner.ml.loop.train`` with the learning test's settings on ``--train`` tickets, ~10 s on idle
  cores). The **trained** adapter answers a queue name and stops (2 tokens: the label and
  ``<|end|>``), as a useful fine-tune does. With ``--with-base`` the untrained **base** is measured
  too: it rambles to ``max_new_tokens``, the worst case for batching (every row of a batch runs until
  its longest answer is done), and one-at-a-time it costs about 4x the trained adapter's run time.
* **Alternating**: after an untimed warm-up, each repeat runs every mode once over all examples, the
  order reversed on every other repeat (16, 32, 1 / 1, 32, 16 / ...), so drifts in machine load hit all
  modes alike.
* **Measured per pass** (one mode over all examples): wall time (``perf_counter``) and the process's CPU
  time (``process_time``, all threads; on a busy machine it grows too, as OpenMP threads spin-wait
  for cores); the machine's CPU used by *other* processes in the same windows (``/proc/stat``) is
  reported too. Per example: ``Generation.latency_s``, the wall time of the ``generate`` call its
  answer came from (for a batch: the whole batch, which is what evaluation stores and summarises with
  ``metrics.latency_summary``), and that time divided by the batch's size (the amortised cost).
* **Checked**: greedy answers must not depend on batching, nor change from repeat to repeat: the text
  and the number of generated tokens of every example are compared between each batched mode and
  ``batch_size=1`` and across repeats. Any mismatch is counted, listed, and makes the exit status 1.

    .venv/bin/python bench/eval_throughput.py      # trained adapter: ~40 s on 2 idle cores, 4-5 min busy
    .venv/bin/python bench/eval_throughput.py --with-base --threads 1 --json eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The ticket-routing prompt and the tiny-model settings that learn (tests/unit/test_training.py).
SYSTEM = "route the ticket to one queue: billing, technical, account or shipping."
MODEL_ARGS: dict[str, Any] = {"hidden_size": 256, "num_layers": 2, "num_heads": 4}
CONFIG: dict[str, Any] = {
    "epochs": 3,
    "lr": 3e-3,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "modules_to_save": "embed_tokens",
    "max_len": 512,
    "batch_tokens": 1024,
    "warmup_ratio": 0.05,
    "gradient_checkpointing": False,
    "early_stopping_patience": 2,
}
VOCAB_SEED, TRAIN_SEED, DEV_SEED, HELD_OUT_SEED = 99, 1, 2, 3
N_DEV = 40
WARMUP_EXAMPLES = 16


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (as ``runner.ml.metrics`` computes it)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _machine_busy_s() -> float | None:
    """Core-seconds the whole machine has spent busy since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is in user)
    return busy / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "bitsandbytes"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


# --------------------------------------------------------------------------------------------------
# Passes
# --------------------------------------------------------------------------------------------------


@dataclass
class Pass:
    """One mode run over all held-out examples."""

    batch_size: int
    repeat: int
    wall_s: float
    cpu_s: float
    others_cpu_s: float | None
    latencies_s: list[float]
    amortised_s: list[float]
    answers: list[tuple[str, int]]
    prompt_tokens: list[int] = field(default_factory=list)


def run_pass(
    model: Any, tokenizer: Any, conversations: list[Any], batch_size: int, repeat: int, max_new: int
) -> Pass:
    from runner.ml.inference import generate

    busy0, wall0, cpu0 = _machine_busy_s(), time.perf_counter(), time.process_time()
    outputs = generate(model, tokenizer, conversations, max_new_tokens=max_new, batch_size=batch_size)
    wall, cpu, busy1 = time.perf_counter() - wall0, time.process_time() - cpu0, _machine_busy_s()
    # Each generate call's examples share its latency; count them to get the amortised cost.
    per_call: dict[float, int] = {}
    for out in outputs:
        per_call[out.latency_s] = per_call.get(out.latency_s, 0) + 1
    return Pass(
        batch_size=batch_size,
        repeat=repeat,
        wall_s=wall,
        cpu_s=cpu,
        others_cpu_s=None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu),
        latencies_s=[o.latency_s for o in outputs],
        amortised_s=[o.latency_s / per_call[o.latency_s] for o in outputs],
        answers=[(o.text, o.output_tokens) for o in outputs],
        prompt_tokens=[o.prompt_tokens for o in outputs],
    )


def measure_model(
    name: str,
    model_dir: Path,
    adapter: Path | None,
    *,
    quantize: bool,
    tickets: list[tuple[str, str]],
    batch_sizes: list[int],
    repeats: int,
    max_new: int,
) -> dict[str, Any]:
    from runner.ml.inference import load_for_inference

    model, tokenizer = load_for_inference(str(model_dir), adapter, quantize=quantize)
    conversations = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": t}] for t, _ in tickets
    ]
    modes = [*batch_sizes, 1]
    for size in modes:  # untimed warm-up: first calls allocate, pick kernels, fill caches
        run_pass(model, tokenizer, conversations[:WARMUP_EXAMPLES], size, -1, max_new)
    passes: list[Pass] = []
    for repeat in range(repeats):
        for size in modes if repeat % 2 == 0 else list(reversed(modes)):
            done = run_pass(model, tokenizer, conversations, size, repeat, max_new)
            passes.append(done)
            print(
                f"  {name:7} repeat {repeat + 1}/{repeats} batch {size:>2}: {done.wall_s:6.2f} s wall, "
                f"{done.cpu_s:6.2f} CPU-s",
                flush=True,
            )
    del model

    n = len(tickets)
    reference = [p for p in passes if p.batch_size == 1]
    mismatches: list[dict[str, Any]] = []
    for p in passes:
        base = reference[0] if p.batch_size == 1 else next(r for r in reference if r.repeat == p.repeat)
        if p is base:
            continue
        for index, (got, want) in enumerate(zip(p.answers, base.answers, strict=True)):
            if got != want:
                mismatches.append(
                    {
                        "batch_size": p.batch_size,
                        "repeat": p.repeat,
                        "against": "batch_size 1, same repeat"
                        if p.batch_size != 1
                        else "batch_size 1, repeat 1",
                        "example": index,
                        "got": list(got),
                        "expected": list(want),
                    }
                )
    texts = [text for text, _ in reference[0].answers]
    modes_out: dict[str, Any] = {}
    for size in modes:
        mine = [p for p in passes if p.batch_size == size]
        wall, cpu = sum(p.wall_s for p in mine), sum(p.cpu_s for p in mine)
        others = [p.others_cpu_s for p in mine]
        latencies = [x for p in mine for x in p.latencies_s]
        amortised = [x for p in mine for x in p.amortised_s]
        modes_out[str(size)] = {
            "batch_size": size,
            "passes": len(mine),
            "examples_per_s": n * len(mine) / wall,
            "examples_per_cpu_s": n * len(mine) / cpu,
            "examples_per_s_per_pass": [n / p.wall_s for p in mine],
            "wall_s_per_pass": [p.wall_s for p in mine],
            "cpu_s_per_pass": [p.cpu_s for p in mine],
            "cores_used": cpu / wall,
            "others_cpu_share": (
                None if any(o is None for o in others) else sum(o for o in others if o is not None) / wall
            ),
            "latency_p50_s": _percentile(latencies, 50),
            "latency_p95_s": _percentile(latencies, 95),
            "amortised_p50_s": _percentile(amortised, 50),
            "amortised_p95_s": _percentile(amortised, 95),
            "amortised_mean_s": statistics.fmean(amortised),
        }
    single = modes_out["1"]
    for size in batch_sizes:
        mode = modes_out[str(size)]
        pairs = [
            next(p for p in passes if p.batch_size == 1 and p.repeat == q.repeat).wall_s / q.wall_s
            for q in passes
            if q.batch_size == size
        ]
        mode["speedup_wall"] = mode["examples_per_s"] / single["examples_per_s"]
        mode["speedup_cpu"] = mode["examples_per_cpu_s"] / single["examples_per_cpu_s"]
        mode["speedup_wall_per_repeat"] = pairs
    output_tokens = [tokens for _, tokens in reference[0].answers]
    return {
        "name": name,
        "adapter": adapter is not None,
        "modes": modes_out,
        "mismatches": mismatches,
        "mismatched_examples": len({m["example"] for m in mismatches}),
        "accuracy": sum(text == queue for text, (_, queue) in zip(texts, tickets, strict=True)) / n,
        "mean_output_tokens": statistics.fmean(output_tokens),
        "max_output_tokens": max(output_tokens),
        "mean_prompt_tokens": statistics.fmean(reference[0].prompt_tokens),
        "max_prompt_tokens": max(reference[0].prompt_tokens),
        "sample_answers": texts[:5],
        "passes": [vars(p) for p in passes],
    }


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="held-out tickets answered per pass")
    parser.add_argument(
        "--batch-size",
        default="16,32",
        help="batched mode(s), comma-separated, compared with batch_size=1 (default 16,32)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per mode, order alternating")
    parser.add_argument("--no-quant", action="store_true", help="train and load the base unquantized")
    parser.add_argument("--train", type=int, default=200, help="tickets the adapter is trained on")
    parser.add_argument(
        "--max-new-tokens", type=int, default=16, help="evaluation's value for classification"
    )
    parser.add_argument(
        "--with-base",
        action="store_true",
        help="also measure the untrained base (answers run to --max-new-tokens; ~4x the time)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--json", metavar="PATH", help="also write the results, every pass included")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = sorted({int(v) for v in args.batch_size.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--batch-size: expected whole numbers separated by commas, got {args.batch_size!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 2:
        parser.error("--batch-size: every batched mode must be 2 or more (batch_size=1 is always measured)")
    if args.examples < 1 or args.repeats < 1 or args.train < 8 or args.max_new_tokens < 1:
        parser.error("--examples, --repeats and --max-new-tokens must be at least 1, --train at least 8")
    return args


def _print_model(result: dict[str, Any], batch_sizes: list[int]) -> None:
    print(
        f"\n{result['name']}: accuracy {result['accuracy']:.2f}, output tokens mean "
        f"{result['mean_output_tokens']:.2f} (max {result['max_output_tokens']}), prompt tokens mean "
        f"{result['mean_prompt_tokens']:.1f} (max {result['max_prompt_tokens']}); "
        f"answers e.g. {result['sample_answers'][:3]}"
    )
    header = (
        f"  {'batch':>5} {'ex/s':>7} {'ex/CPU-s':>8} {'cores':>5} {'others':>6} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'amort p50':>9} {'amort p95':>9} {'x wall':>6} {'x CPU':>6}  x wall per repeat"
    )
    print(header)
    for size in [*batch_sizes, 1]:
        m = result["modes"][str(size)]
        others = "?" if m["others_cpu_share"] is None else f"{m['others_cpu_share']:.2f}"
        ratio = f"{m['speedup_wall']:6.2f} {m['speedup_cpu']:6.2f}" if size != 1 else f"{'1':>6} {'1':>6}"
        per_repeat = ", ".join(f"{x:.2f}" for x in m.get("speedup_wall_per_repeat", []))
        print(
            f"  {size:>5} {m['examples_per_s']:7.1f} {m['examples_per_cpu_s']:8.1f} {m['cores_used']:5.2f} "
            f"{others:>6} {m['latency_p50_s'] * 1e3:8.1f} {m['latency_p95_s'] * 1e3:8.1f} "
            f"{m['amortised_p50_s'] * 1e3:9.2f} {m['amortised_p95_s'] * 1e3:9.2f} {ratio}  {per_repeat}"
        )
    if result["mismatches"]:
        print(
            f"  MISMATCH: {len(result['mismatches'])} answers in "
            f"{result['mismatched_examples']} examples differ"
        )
        for m in result["mismatches"][:10]:
            print(f"    {m}")
    else:
        print("  answers identical in every mode and repeat")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    load_at_start = os.getloadavg()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers deprecations, not ours
    if args.threads:
        torch.set_num_threads(args.threads)
    from demo.synthetic import chat_example, ticket_examples, ticket_texts
    from demo.tinymodel import make_tiny_model
    from runner.core.trainconfig import TrainConfig
    from runner.ml.loop import train
    from runner.ml.model import pick_device

    quantize = not args.no_quant
    versions = _versions()
    device = pick_device()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"machine: nproc {os.cpu_count()}, {_cpu_model()}, device {device}, load average at start "
        f"{load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}"
    )
    print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
        f"4-bit NF4: {'on' if quantize else 'off'}; "
        f"{args.examples} held-out tickets, batch sizes {args.batch_sizes} vs 1, {args.repeats} repeats, "
        f"max_new_tokens {args.max_new_tokens}"
    )

    results: dict[str, Any] = {
        "command": sys.argv,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "device": str(device),
            "load_average_start": load_at_start,
        },
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "quantize_4bit": quantize,
        "examples": args.examples,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "train_tickets": args.train,
        "models": [],
    }
    tickets = ticket_examples(args.examples, seed=HELD_OUT_SEED)
    with tempfile.TemporaryDirectory(prefix="ftbot-eval-bench-") as tmp:
        model_dir, adapter_dir = Path(tmp) / "model", Path(tmp) / "adapter"
        make_tiny_model(model_dir, ticket_texts(2000, seed=VOCAB_SEED) + [SYSTEM], **MODEL_ARGS)
        overrides = {**CONFIG, "quantize": quantize}
        config = TrainConfig.from_overrides(
            TrainConfig(base_model=str(model_dir)),
            {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in overrides.items()},
        )
        t_wall, t_cpu = time.perf_counter(), time.process_time()
        trained = train(
            config,
            [chat_example(SYSTEM, t, q) for t, q in ticket_examples(args.train, seed=TRAIN_SEED)],
            [chat_example(SYSTEM, t, q) for t, q in ticket_examples(N_DEV, seed=DEV_SEED)],
            adapter_dir,
        )
        results["training"] = {
            "wall_s": time.perf_counter() - t_wall,
            "cpu_s": time.process_time() - t_cpu,
            "steps": trained.steps,
            "best_eval_loss": trained.best_eval_loss,
        }
        print(
            f"adapter trained on {args.train} tickets: {trained.steps} steps, best eval loss "
            f"{trained.best_eval_loss:.4f}, {results['training']['wall_s']:.1f} s wall, "
            f"{results['training']['cpu_s']:.1f} CPU-s"
        )
        targets: list[tuple[str, Path | None]] = [("trained", adapter_dir)]
        if args.with_base:
            targets.append(("base", None))
        for name, adapter in targets:
            results["models"].append(
                measure_model(
                    name,
                    model_dir,
                    adapter,
                    quantize=quantize,
                    tickets=tickets,
                    batch_sizes=args.batch_sizes,
                    repeats=args.repeats,
                    max_new=args.max_new_tokens,
                )
            )

    for result in results["models"]:
        _print_model(result, args.batch_sizes)
    results["total_wall_s"] = time.perf_counter() - started_wall
    results["total_cpu_s"] = time.process_time() - started_cpu
    results["load_average_end"] = os.getloadavg()
    print(
        f"\ntotal {results['total_wall_s']:.1f} s wall, {results['total_cpu_s']:.1f} CPU-s; "
        "load average at end " + " ".join(f"{x:.2f}" for x in results["load_average_end"])
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"results written to {args.json}")
    return 1 if any(r["mismatches"] for r in results["models"]) else 0


if __name__ == "__main__":
    sys.exit(main())
