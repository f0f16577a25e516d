"""Training throughput: ftbot's packed QLoRA step against two Hugging Face Trainer baselines.

Same tiny 4-bit Llama (4 layers), same chat data (16-256 tokens per example, loss on the assistant
turn only), same LoRA settings, optimizer family, learning-rate schedule and number of optimizer steps:

* ``pad_longest``  - Trainer + peft, every batch padded to the longest example in the dataset
  (``DataCollatorForSeq2Seq(padding="max_length")``), as in many tutorials;
* ``group_by_length`` - Trainer + peft, dynamic padding to the longest example of each batch, with
  ``train_sampling_strategy="group_by_length"`` (transformers 5 spelling of ``group_by_length=True``);
* ``ftbot`` - ``runner.ml.loop.train``: best-fit packing into fixed rows with per-sequence
  attention, logits only at target positions, PEFT's LoRA layers run through ``runner.ml.fastlora``.

Each method runs in its own subprocess (its own peak RSS). By default the three run at the same
time, each on one torch thread, and start training together behind a file barrier: on a shared
machine whose load drifts (this one: 2 cores, other test suites), running them one after another gave
ratios that swung by +-15% between repeats, while concurrent runs see the same load. ``--sequential``
runs them one after another (best of ``--repeats``) for a dedicated machine, and is used on CUDA.
Two epochs of the baselines by default (64 steps of 11 examples; 6 packed rows of 256 tokens hold
about as much), so every method sees nearly the same data per step.

Reported per method: real (non-pad) tokens per second of wall time and per CPU-second, peak memory
(CUDA ``max_memory_allocated``, or the process's peak RSS and its rise during training on CPU), the
mean training loss of the last 10 steps and the eval loss on held-out examples (one function for all
three), and the bytes per parameter of the 4-bit base weights.

    .venv/bin/python bench/train_throughput.py                  # ~1 minute per round on 2 CPU cores
    .venv/bin/python bench/train_throughput.py --sequential --repeats 3 --json result.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METHODS = ("pad_longest", "group_by_length", "ftbot")
MIN_LEN, MAX_LEN = 16, 256  # tokens per example, template included
OVERHEAD = 6  # <s> <|user|> ... <|end|> <|assistant|> queue <|end|>


def _rss_now() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --------------------------------------------------------------------------------------------------
# Data and model (parent process)
# --------------------------------------------------------------------------------------------------


def build_examples(tokenizer: Any, n: int, seed: int) -> list[dict[str, Any]]:
    """Chat examples whose token counts spread uniformly over [MIN_LEN, MAX_LEN]."""
    from demo.synthetic import QUEUES, chat_example, ticket_examples

    rng = random.Random(seed)
    streams: dict[str, list[str]] = {q: [] for q in QUEUES}
    for text, queue in ticket_examples(40 * n, seed):
        streams[queue] += tokenizer.tokenize(text)
    cursors = dict.fromkeys(QUEUES, 0)
    examples = []
    for index in range(n):
        queue = QUEUES[index % len(QUEUES)]
        words = rng.randint(MIN_LEN, MAX_LEN) - OVERHEAD
        start = cursors[queue]
        cursors[queue] += words
        user = " ".join(streams[queue][start : start + words])
        example = chat_example("", user, queue)
        example["messages"] = example["messages"][1:]  # no system prompt: lengths stay exact
        examples.append(example)
    return examples


def prepare(workdir: Path, n_train: int, n_eval: int) -> None:
    from demo.synthetic import ticket_texts
    from demo.tinymodel import make_tiny_model
    from runner.ml.model import load_tokenizer
    from runner.ml.packing import encode_chat

    model_dir = make_tiny_model(workdir / "base", ticket_texts(3000, seed=123), num_layers=4, seed=0)
    tokenizer = load_tokenizer(model_dir)
    train = build_examples(tokenizer, n_train, seed=1)
    evals = build_examples(tokenizer, n_eval, seed=2)
    lengths = [len(encode_chat(tokenizer, e["messages"]).input_ids) for e in train]
    mean_len = sum(lengths) / len(lengths)
    (workdir / "data.json").write_text(json.dumps({"train": train, "eval": evals, "mean_len": mean_len}))
    print(
        f"data: {n_train} train examples, {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}); {n_eval} eval examples",
        flush=True,
    )


# --------------------------------------------------------------------------------------------------
# One method (child process)
# --------------------------------------------------------------------------------------------------


def _eval_loss(model: Any, tokenizer: Any, examples: list[dict[str, Any]], device: Any) -> float:
    import torch

    from runner.ml.loop import target_loss_sum
    from runner.ml.packing import collate_rows, encode_chat, pack_best_fit

    encoded = [encode_chat(tokenizer, e["messages"]) for e in examples]
    rows = pack_best_fit([len(e.input_ids) for e in encoded], MAX_LEN)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), 4):
            batch = collate_rows(encoded, rows[start : start + 4], MAX_LEN, int(tokenizer.pad_token_id))
            loss, n = target_loss_sum(model, batch.to(device))
            total += float(loss)
            count += n
    return total / count


def run_trainer(method: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """A baseline written as the Hugging Face docs show it: Trainer + peft on a 4-bit model."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from runner.ml.packing import encode_chat

    set_seed(args.seed)  # before the LoRA weights are drawn (Trainer seeds only at its construction)
    cuda = torch.cuda.is_available()
    compute = torch.bfloat16 if cuda else torch.float32
    model_dir = str(args.workdir / "base")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    base = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=bnb, dtype=compute, device_map={"": 0} if cuda else None
    )
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)

    # The same tokenization (chat template, assistant-only labels) as ftbot, so the losses are comparable.
    train_set = []
    for example in data["train"]:
        encoded = encode_chat(tokenizer, example["messages"])
        ids = encoded.input_ids
        train_set.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": encoded.labels})
    longest = max(len(item["input_ids"]) for item in train_set)
    padding: dict[str, Any] = (
        {"padding": "max_length", "max_length": longest} if method == "pad_longest" else {"padding": True}
    )
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, **padding)
    counted = {"real": 0}

    class CountingTrainer(Trainer):
        """Trainer, counting the real tokens of the batches it trains on (the data loader reads ahead)."""

        def training_step(self, model: Any, inputs: dict[str, Any], *rest: Any, **kw: Any) -> Any:
            counted["real"] += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *rest, **kw)

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *_: Any, **__: Any) -> None:
            clock["wall"], clock["cpu"], clock["rss"] = time.perf_counter(), time.process_time(), _rss_now()

        def on_train_end(self, *_: Any, **__: Any) -> None:
            clock["wall"] = time.perf_counter() - clock["wall"]
            clock["cpu"] = time.process_time() - clock["cpu"]

    training_args = TrainingArguments(
        output_dir=str(args.workdir / f"out-{method}"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=args.warmup_ratio,
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch" if not cuda else "paged_adamw_8bit",
        bf16=cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=not cuda,
        disable_tqdm=True,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if method == "group_by_length" else "random",
    )
    trainer = CountingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[Clock()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _wait_at_barrier(args.barrier, args.parties, method)
    trainer.train()
    peak = int(torch.cuda.max_memory_allocated()) if cuda else _peak_rss()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    device = next(model.parameters()).device
    return {
        "tokens": counted["real"],
        "wall_s": clock["wall"],
        "cpu_s": clock["cpu"],
        "peak_bytes": peak,
        "rss_before_bytes": clock["rss"],
        "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]),
        # Before evaluating: on AVX512-BF16 CPUs, inference repacks the weights (bf16 block scales).
        "bytes_per_param": _nf4_bytes_per_param(model),
        "eval_loss": _eval_loss(model, tokenizer, data["eval"], device),
    }


def run_ftbot(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    from peft import PeftModel

    from runner.core.trainconfig import TrainConfig
    from runner.ml.loop import train
    from runner.ml.model import load_base_model, load_tokenizer, pick_device

    config = TrainConfig(
        base_model=str(args.workdir / "base"),
        epochs=100,  # max_steps ends the run
        max_steps=args.steps,
        lr=args.lr,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.05,
        max_len=MAX_LEN,
        # The baselines' tokens per step (batch_size examples of mean length), in whole rows.
        batch_tokens=max(MAX_LEN, round(args.batch_size * data["mean_len"] / MAX_LEN) * MAX_LEN),
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        quantize=True,
        gradient_checkpointing=False,
        early_stopping_patience=0,
    )
    rss_before = _rss_now()
    _wait_at_barrier(args.barrier, args.parties, "ftbot")
    result = train(config, data["train"], [], args.workdir / f"out-ftbot-{os.getpid()}")
    device = pick_device()
    model = PeftModel.from_pretrained(
        load_base_model(config.base_model, quantize=True, device=device), result.out_dir
    )
    tokenizer = load_tokenizer(result.out_dir)
    losses = [loss for _, loss in result.loss_curve]
    return {
        "tokens": result.train_tokens,
        "wall_s": result.train_tokens / result.tokens_per_s,
        "cpu_s": result.train_tokens / result.tokens_per_cpu_s,
        "peak_bytes": result.peak_memory_bytes,
        "rss_before_bytes": rss_before,
        "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]),
        # Before evaluating: on AVX512-BF16 CPUs, inference repacks the weights (bf16 block scales).
        "bytes_per_param": _nf4_bytes_per_param(model),
        "eval_loss": _eval_loss(model, tokenizer, data["eval"], device),
        "pad_fraction": result.pad_fraction,
    }


def _nf4_bytes_per_param(model: Any) -> tuple[float, float]:
    """Bytes per weight of the 4-bit layers: (everything, without the per-layer lookup tables).

    Everything = packed 4-bit data + per-block absmax (8-bit, double quantization) + second-level
    absmax + each layer's own NF4 and dynamic-map tables (~1.1 KB per layer, which dominates for
    the tiny model's 16k-weight layers; negligible for real ones).
    """
    import bitsandbytes as bnb
    import torch

    packed = blocks = tables = count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state: Any = module.weight.quant_state  # type: ignore[attr-defined]
            packed += module.weight.data.nbytes
            blocks += state.absmax.nbytes
            tables += state.code.nbytes
            if isinstance(state.offset, torch.Tensor):
                blocks += state.offset.nbytes
            if state.nested:
                blocks += state.state2.absmax.nbytes
                tables += state.state2.code.nbytes
            count += state.shape.numel()
    return (packed + blocks + tables) / count, (packed + blocks) / count


def child(args: argparse.Namespace) -> None:
    # Both kinds import the same libraries, so their resident memory starts from the same floor.
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    from transformers import Trainer  # noqa: F401

    import runner.ml.loop  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    data = json.loads((args.workdir / "data.json").read_text())
    method = args.child
    metrics = run_ftbot(args, data) if method == "ftbot" else run_trainer(method, args, data)
    metrics["method"] = method
    metrics["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    metrics["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(metrics), flush=True)


# --------------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------------


def _rate(run: dict[str, Any], clock: str) -> float:
    return float(run["tokens"] / run[clock])


def _summary(runs: list[dict[str, Any]], *, best: bool) -> dict[str, dict[str, Any]]:
    """Per method: the best (sequential: noise only ever slows a run down) or median (concurrent) rates
    over its repeats, the highest peak memory, and the losses (identical across repeats: same seed)."""

    def pick(values: list[float]) -> float:
        return max(values) if best else statistics.median(values)

    summary: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        rise = [max(0, r["peak_bytes"] - r["rss_before_bytes"]) if r["device"] == "cpu" else 0 for r in mine]
        summary[method] = {
            "tokens_per_s": pick([_rate(r, "wall_s") for r in mine]),
            "tokens_per_cpu_s": pick([_rate(r, "cpu_s") for r in mine]),
            "each_run": [(round(_rate(r, "wall_s")), round(_rate(r, "cpu_s"))) for r in mine],
            "peak_bytes": max(r["peak_bytes"] for r in mine),
            "rise_bytes": max(rise),
            "train_loss_last10": mine[0]["train_loss_last10"],
            "eval_loss": mine[0]["eval_loss"],
            "bytes_per_param": mine[0]["bytes_per_param"],
            "tokens": mine[0]["tokens"],
            "device": mine[0]["device"],
            "threads": mine[0]["threads"],
        }
    return summary


def _table(summary: dict[str, dict[str, Any]], *, sequential: bool) -> str:
    rows = [
        "| method | tokens/s (wall) | tokens per CPU-s | peak memory | rise in training "
        "| train loss (last 10) | eval loss | tokens | each run: tokens/s, per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        rows.append(
            f"| {method} | {s['tokens_per_s']:.0f} | {s['tokens_per_cpu_s']:.0f} "
            f"| {s['peak_bytes'] / 2**20:.0f} MiB | {s['rise_bytes'] / 2**20:.0f} MiB "
            f"| {s['train_loss_last10']:.3f} | {s['eval_loss']:.3f} "
            f"| {s['tokens']} | {'; '.join(f'{w}, {c}' for w, c in s['each_run'])} |"
        )
    any_run = next(iter(summary.values()))
    everything, per_block = any_run["bytes_per_param"]
    rows.append(
        f"\n4-bit NF4 + double quantization: {everything:.3f} bytes/param in the tiny model's layers "
        f"({per_block:.4f} without the per-layer lookup tables, i.e. in large layers; floor 0.5). "
        f"Device: {any_run['device']}, {any_run['threads']} torch threads per run."
    )
    rows.append(
        "Runs: one method after another, best of the repeats."
        if sequential
        else "Runs: all methods at once (start barrier), median of the repeats: every method sees the same "
        "machine load, so compare ratios; tokens/s are shares of the CPU."
    )
    ours = summary.get("ftbot")
    for name in ("pad_longest", "group_by_length"):
        if ours and name in summary:
            other = summary[name]
            rows.append(
                f"ftbot vs {name}: {ours['tokens_per_s'] / other['tokens_per_s']:.2f}x tokens/s (wall), "
                f"{ours['tokens_per_cpu_s'] / other['tokens_per_cpu_s']:.2f}x tokens per CPU-s, "
                f"peak memory {ours['peak_bytes'] / other['peak_bytes']:.2f}x"
            )
    return "\n".join(rows)


def _child_command(method: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--workdir", str(workdir)]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    command += ["--lora-r", str(args.lora_r), "--warmup-ratio", str(args.warmup_ratio)]
    command += ["--seed", str(args.seed), "--threads", str(args.threads)]
    return command


def _result(method: str, returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if returncode or not lines:
        print(stdout[-3000:], stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{method} failed (exit {returncode})")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    print(
        f"  {method}: {_rate(result, 'wall_s'):.0f} tokens/s, {_rate(result, 'cpu_s'):.0f} per CPU-s, "
        f"eval loss {result['eval_loss']:.3f}",
        flush=True,
    )
    return result


def _run_round(
    methods: list[str], args: argparse.Namespace, workdir: Path, index: int
) -> list[dict[str, Any]]:
    """One run of every method: all at once behind a start barrier, or (``--sequential``) one by one."""
    began = time.perf_counter()
    if args.sequential:
        results = []
        # Alternate the order so slow drift in the machine's load does not favour one method.
        for method in methods if index % 2 == 0 else methods[::-1]:
            done = subprocess.run(
                _child_command(method, args, workdir), capture_output=True, text=True, cwd=ROOT
            )
            results.append(_result(method, done.returncode, done.stdout, done.stderr))
    else:
        barrier = workdir / f"barrier-{index}"
        barrier.mkdir()
        children = {
            method: subprocess.Popen(
                [
                    *_child_command(method, args, workdir),
                    "--barrier",
                    str(barrier),
                    "--parties",
                    str(len(methods)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for method in methods
        }
        outputs = {method: child.communicate() for method, child in children.items()}
        results = [_result(m, children[m].returncode, *outputs[m]) for m in methods]
    print(f"round {index + 1} done in {time.perf_counter() - began:.0f} s", flush=True)
    return results


def _wait_at_barrier(barrier: Path | None, parties: int, name: str) -> None:
    """Concurrent mode: start training only when every method has finished loading."""
    if barrier is None:
        return
    (barrier / f"{name}-{os.getpid()}").touch()
    deadline = time.monotonic() + 600
    while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps per method (0: --epochs)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the baselines, when --steps is 0")
    # 11 examples of 138 tokens on average fill 6 packed rows of 256 almost exactly (1518 vs 1505 tokens),
    # so all methods see the same data per step.
    parser.add_argument("--batch-size", type=int, default=11, help="examples per step for the baselines")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds of runs; the median (concurrent) or best (sequential) counts",
    )
    parser.add_argument("--train-examples", type=int, default=352)
    parser.add_argument("--eval-examples", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--warmup-ratio", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    # One thread by default: on a shared CPU, oversubscribed OpenMP threads spin-wait and swamp the
    # differences being measured (4.6x slower training was measured with 2 threads on 2 busy cores).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS)
    )
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="run the methods one after another (a dedicated machine) instead of all at once",
    )
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--parties", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    methods = args.methods.split(",")
    if not args.sequential:
        import torch

        args.sequential = torch.cuda.is_available()  # concurrent runs would share the one GPU
    args.steps = args.steps or args.epochs * -(-args.train_examples // args.batch_size)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ftbot-bench-") as tmp:
        workdir = Path(tmp)
        prepare(workdir, args.train_examples, args.eval_examples)
        for index in range(args.repeats):
            runs += _run_round(methods, args, workdir, index)
    summary = _summary(runs, best=args.sequential)
    print(_table(summary, sequential=args.sequential))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
