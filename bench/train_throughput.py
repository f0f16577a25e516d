"""Training throughput: ftbot's packed QLoRA step against Hugging Face Trainer and TRL's SFTTrainer.

Same tiny 4-bit Llama (4 layers), same chat data (16-256 tokens per example, loss on the assistant
turn only), same LoRA settings, optimizer family, learning-rate schedule and number of optimizer steps:

* ``pad_longest``  - Trainer + peft, every batch padded to the longest example in the dataset
  (``DataCollatorForSeq2Seq(padding="max_length")``), as in many tutorials;
* ``group_by_length`` - Trainer + peft, dynamic padding to the longest example of each batch, with
  ``train_sampling_strategy="group_by_length"`` (transformers 5 spelling of ``group_by_length=True``);
* ``trl_packing`` - TRL's ``SFTTrainer`` with ``SFTConfig(packing=True, assistant_only_loss=True)``:
  best-fit-decreasing packing into sequences of 256 tokens, as many per step as ftbot has rows,
  padding-free (a step's sequences concatenated into one row, per-sequence position ids);
* ``trl_padding_free`` - the same trainer with ``padding_free=True`` and no packing: 11 whole
  examples per step, concatenated the same way;
* ``ftbot`` - ``runner.ml.loop.train``: best-fit packing into fixed rows with per-sequence
  attention, logits only at target positions, PEFT's LoRA layers run through ``runner.ml.fastlora``.

TRL needs the ``bench`` extra (``pip install -e .[train,bench]``). Its assistant-only loss takes the
targets from ``{% generation %}`` markers in the chat template: the bench gives the tokenizer
``GENERATION_TEMPLATE`` (the tiny model's template with the markers) and checks, before training, that
it renders every example as the model's template does, that TRL's prepared sequences have the token ids
and labels of ``runner.ml.packing.encode_chat``, and that a padding-free row gives the logits of its
sequences run one by one.

Each method runs in its own subprocess (its own peak RSS). By default they all run at the same
time, each on one torch thread, and start training together behind a file barrier: on a shared
machine whose load drifts (this one: 2 cores, other test suites), running them one after another gave
ratios that swung by +-15% between repeats, while concurrent runs see the same load. ``--sequential``
runs them one after another (best of ``--repeats``) for a dedicated machine, and is used on CUDA.
Two epochs of the baselines by default (64 steps of 11 examples; 6 packed rows of 256 tokens hold
about as much), so every method sees nearly the same data per step.

Reported per method: real (non-pad) tokens per second of wall time and per CPU-second, peak memory
(CUDA ``max_memory_allocated``, or the process's peak RSS and its rise during training on CPU), the
mean training loss of the last 10 steps and the eval loss on held-out examples (one function for all
methods), steps, real and target tokens (positions with a loss term), and the bytes per parameter of
the 4-bit base weights.

    .venv/bin/python bench/train_throughput.py                  # all five at once, 3-5 minutes per round
    .venv/bin/python bench/train_throughput.py --sequential --repeats 3 --json result.json
"""

from __future__ import annotations

import argparse
import importlib.util
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

METHODS = ("pad_longest", "group_by_length", "trl_packing", "trl_padding_free", "ftbot")
TRL_METHODS = ("trl_packing", "trl_padding_free")
MIN_LEN, MAX_LEN = 16, 256  # tokens per example, template included
OVERHEAD = 6  # <s> <|user|> ... <|end|> <|assistant|> queue <|end|>


# The tiny model's chat template (demo.tinymodel.CHAT_TEMPLATE) with `{% generation %}` markers around
# what the assistant must generate: its content and the <|end|> that stops it, not the <|assistant|> header.
# TRL's `assistant_only_loss` takes its loss mask from these markers (`return_assistant_tokens_mask`), and
# the targets are then exactly those of `runner.ml.packing.encode_chat`. It renders every conversation
# exactly as the model's own template does; `run_trl` checks both, example by example.
GENERATION_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}"
    "{% endif %}"
    "<|{{ message['role'] }}|>\n"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% else %}{{ message['content'] }}<|end|>{% endif %}"
    "{{ '\\n' }}"  # a newline right after a block tag would be trimmed (trim_blocks)
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


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
    from demo.synthetic import QUEUES, ticket_texts
    from demo.tinymodel import make_tiny_model
    from runner.ml.model import load_tokenizer
    from runner.ml.packing import encode_chat

    # The queue names (the answers) are words of the vocabulary too, so the four answers are four tokens.
    texts = [*ticket_texts(3000, seed=123), *QUEUES]
    model_dir = make_tiny_model(workdir / "base", texts, num_layers=4, seed=0)
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


def _quantized_base(args: argparse.Namespace) -> tuple[Any, Any, bool]:
    """The tokenizer and the 4-bit base, loaded as the Hugging Face QLoRA docs show it (baselines and TRL)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

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
    return tokenizer, prepare_model_for_kbit_training(base, use_gradient_checkpointing=False), cuda


def _lora_config(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _shared_training_args(args: argparse.Namespace, method: str, cuda: bool) -> dict[str, Any]:
    """TrainingArguments every Trainer-based method shares (the optimizer and schedule ftbot uses too)."""
    return {
        "output_dir": str(args.workdir / f"out-{method}"),
        "max_steps": args.steps,
        "learning_rate": args.lr,
        "lr_scheduler_type": "cosine",
        "warmup_steps": args.warmup_ratio,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "optim": "adamw_torch" if not cuda else "paged_adamw_8bit",
        "bf16": cuda,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": args.seed,
        "use_cpu": not cuda,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


class _Counts:
    """What a Trainer-based method trains on and when: real tokens, target tokens, steps, clocks."""

    def __init__(self) -> None:
        self.real = self.targets = self.steps = 0
        self.wall = self.cpu = 0.0
        self.rss = 0

    def batch(self, inputs: dict[str, Any]) -> None:
        # Padding-free batches (TRL) have no attention mask and no padding: every position is real.
        mask = inputs.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        # A label at position 0 of a sequence is always -100 (BOS; TRL's padding-free collator masks every
        # sequence start), so the labels that are not -100 are exactly the loss terms after the shift.
        self.targets += int((inputs["labels"] != -100).sum())
        self.steps += 1

    def callback(self) -> Any:
        from transformers import TrainerCallback

        counts = self

        class Clock(TrainerCallback):
            def on_train_begin(self, *_: Any, **__: Any) -> None:
                counts.wall, counts.cpu, counts.rss = time.perf_counter(), time.process_time(), _rss_now()

            def on_train_end(self, *_: Any, **__: Any) -> None:
                counts.wall = time.perf_counter() - counts.wall
                counts.cpu = time.process_time() - counts.cpu

        return Clock()


def _trainer_metrics(trainer: Any, counts: _Counts, data: dict[str, Any]) -> dict[str, Any]:
    import torch

    model, tokenizer = trainer.model, trainer.processing_class
    peak = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else _peak_rss()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "tokens": counts.real,
        "target_tokens": counts.targets,
        "steps": counts.steps,
        "wall_s": counts.wall,
        "cpu_s": counts.cpu,
        "peak_bytes": peak,
        "rss_before_bytes": counts.rss,
        "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]),
        # Before evaluating: on AVX512-BF16 CPUs, inference repacks the weights (bf16 block scales).
        "bytes_per_param": _nf4_bytes_per_param(model),
        "eval_loss": _eval_loss(model, tokenizer, data["eval"], next(model.parameters()).device),
    }


def run_trainer(method: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """A baseline written as the Hugging Face docs show it: Trainer + peft on a 4-bit model."""
    import torch
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from runner.ml.packing import encode_chat

    set_seed(args.seed)  # before the LoRA weights are drawn (Trainer seeds only at its construction)
    tokenizer, base, cuda = _quantized_base(args)
    model = get_peft_model(base, _lora_config(args))

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
    counts = _Counts()

    class CountingTrainer(Trainer):
        """Trainer, counting the tokens of the batches it trains on (the data loader reads ahead)."""

        def training_step(self, model: Any, inputs: dict[str, Any], *rest: Any, **kw: Any) -> Any:
            counts.batch(inputs)
            return super().training_step(model, inputs, *rest, **kw)

    training_args = TrainingArguments(
        **_shared_training_args(args, method, cuda),
        per_device_train_batch_size=args.batch_size,
        train_sampling_strategy="group_by_length" if method == "group_by_length" else "random",
    )
    trainer = CountingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[counts.callback()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _wait_at_barrier(args.barrier, args.parties, method)
    trainer.train()
    return _trainer_metrics(trainer, counts, data)


def run_trl(method: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """TRL's SFTTrainer configured as its docs show for QLoRA on chat data, assistant-only loss.

    ``trl_packing``: ``packing=True`` (best-fit decreasing into sequences of ``MAX_LEN`` tokens, the
    default ``packing_strategy="bfd"``, which turns padding-free on), as many packed sequences per step
    as ftbot has rows. ``trl_padding_free``: ``padding_free=True`` without packing, ``--batch-size``
    whole examples per step. Either way TRL's collator concatenates a step's sequences into one row
    with per-sequence ``position_ids`` and no attention mask; transformers infers the sequence
    boundaries from the position ids and masks attention block-diagonally (checked below), and TRL's
    fused LM head computes logits only where a label is not -100.

    Settings the other methods share override SFTConfig's own defaults where they differ: no gradient
    checkpointing (its default is on), bf16 only on CUDA (its default is bf16), and the optimizer,
    schedule and learning rate of ``_shared_training_args``. What TRL does to a quantized model is left
    as is: it casts the trainable LoRA weights to bf16 (the QLoRA paper's recipe), so on CPU the LoRA
    matmuls and AdamW's update of those weights run in bf16 while the other methods keep them in fp32.
    """
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(args.seed)
    tokenizer, base, cuda = _quantized_base(args)
    model_template = tokenizer.chat_template
    tokenizer.chat_template = GENERATION_TEMPLATE
    packing = method == "trl_packing"
    counts = _Counts()

    class CountingSFTTrainer(SFTTrainer):
        """SFTTrainer, counting the tokens of the batches it trains on (the data loader reads ahead)."""

        def training_step(self, model: Any, inputs: dict[str, Any], *rest: Any, **kw: Any) -> Any:
            counts.batch(inputs)
            return super().training_step(model, inputs, *rest, **kw)

    config = SFTConfig(
        **_shared_training_args(args, method, cuda),
        per_device_train_batch_size=_rows_per_step(args, data) if packing else args.batch_size,
        assistant_only_loss=True,
        packing=packing,
        padding_free=not packing,  # packing="bfd" turns it on by itself
        max_length=MAX_LEN if packing else None,  # padding-free without packing refuses a max_length
        gradient_checkpointing=False,
    )
    trainer = CountingSFTTrainer(
        model=base,
        args=config,
        train_dataset=Dataset.from_list(data["train"]),
        processing_class=tokenizer,
        peft_config=_lora_config(args),
        callbacks=[counts.callback()],
    )
    checks = _check_trl_inputs(trainer, tokenizer, model_template, data["train"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _wait_at_barrier(args.barrier, args.parties, method)
    trainer.train()
    return {**_trainer_metrics(trainer, counts, data), **checks}


def _check_trl_inputs(
    trainer: Any, tokenizer: Any, model_template: str, examples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Check that TRL trains on what the other methods train on, and that packed sequences stay apart.

    1. The generation-marked template renders every example exactly as the model's own template.
    2. Every sequence in TRL's prepared training set (split at its ``seq_lengths`` when packed) has
       the token ids and labels of ``runner.ml.packing.encode_chat``: the prompt is masked, the
       assistant's answer and its ``<|end|>`` are targets, and each example appears once.
    3. A padding-free batch from TRL's own collator gives the same logits as its sequences run one by
       one (transformers infers the boundaries from ``position_ids`` when no FlashAttention is there).

    Raises:
        SystemExit: any check fails (the comparison would not be like for like).
    """
    import torch

    from runner.ml.packing import encode_chat

    for example in examples:
        ours = tokenizer.apply_chat_template(example["messages"], tokenize=False)
        theirs = tokenizer.apply_chat_template(
            example["messages"], tokenize=False, chat_template=model_template
        )
        if ours != theirs:
            raise SystemExit(f"the generation-marked template renders differently: {ours!r} vs {theirs!r}")

    expected: dict[tuple[int, ...], list[list[int]]] = {}
    for example in examples:
        encoded = encode_chat(tokenizer, example["messages"])
        expected.setdefault(tuple(encoded.input_ids), []).append(encoded.labels)
    dataset = trainer.train_dataset
    sequences = 0
    for row in dataset:
        lengths = row.get("seq_lengths") or [len(row["input_ids"])]
        start = 0
        for length in lengths:
            ids, labels = row["input_ids"][start : start + length], row["labels"][start : start + length]
            start += length
            sequences += 1
            candidates = expected.get(tuple(ids))
            if not candidates or labels not in candidates:
                raise SystemExit(f"TRL's sequence {sequences} differs from encode_chat's (ids or labels)")
            candidates.remove(labels)
    if sequences != len(examples) or any(expected.values()):
        raise SystemExit(f"TRL prepared {sequences} sequences for {len(examples)} examples")

    # Train mode, as in training: in eval mode without grad, bitsandbytes repacks the 4-bit weights for
    # its bf16 inference kernel on AVX512-BF16 CPUs (for good; it also shifts logits by ~0.02). The LoRA
    # dropout is off meanwhile, so the passes are deterministic.
    model = trainer.model
    model.train()
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    saved = [m.p for m in dropouts]
    for module in dropouts:
        module.p = 0.0
    device = next(model.parameters()).device
    # A step's worth of sequences: the 2 packed rows holding the most sequences, or 11 whole examples.
    if "seq_lengths" in dataset.column_names:
        picked = sorted(range(len(dataset)), key=lambda i: -len(dataset[i]["seq_lengths"]))[:2]
    else:
        picked = list(range(min(11, len(dataset))))
    batch = trainer.data_collator([dataset[i] for i in picked])
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    worst = leak = 0.0
    with torch.no_grad():
        # use_cache=False as SFTTrainer.compute_loss passes it: with a cache, transformers does not look for
        # packed sequences in the position ids and the sequences attend to each other.
        joined = model(**inputs, use_cache=False).logits[0]
        # Control: the same row with an all-ones attention mask, where the sequences do see each other.
        leaky = model(**inputs, attention_mask=torch.ones_like(batch["input_ids"]), use_cache=False).logits[0]
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [joined.shape[0]]
        for lo, hi in zip(starts, starts[1:], strict=False):
            alone = model(input_ids=batch["input_ids"][:, lo:hi], use_cache=False).logits[0]
            worst = max(worst, float((alone - joined[lo:hi]).abs().max()))
            leak = max(leak, float((alone - leaky[lo:hi]).abs().max()))
    for module, p in zip(dropouts, saved, strict=True):
        module.p = p
    if "attention_mask" in batch or worst > 1e-3 or leak < 1e-2:
        raise SystemExit(
            f"TRL's padding-free batch does not keep its {len(starts) - 1} sequences apart: max |logit diff| "
            f"{worst:.2g} against them run alone ({leak:.2g} when they attend to each other)"
        )
    return {
        "trl_sequences_checked": sequences,
        "trl_row_sequences": len(starts) - 1,
        "trl_packed_logit_diff": worst,
        "trl_leaky_logit_diff": leak,
    }


def _rows_per_step(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Packed rows of ``MAX_LEN`` per step (ftbot, TRL's packing): the baselines' tokens per step
    (``--batch-size`` examples of mean length), in whole rows."""
    return max(1, round(args.batch_size * data["mean_len"] / MAX_LEN))


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
        batch_tokens=_rows_per_step(args, data) * MAX_LEN,
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
        "target_tokens": result.target_tokens,
        "steps": result.steps,
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
    # Every method imports the same libraries, so their resident memory starts from the same floor.
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    from transformers import Trainer  # noqa: F401

    if importlib.util.find_spec("trl") is not None:
        import datasets  # noqa: F401
        import trl  # noqa: F401

    import runner.ml.loop  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    data = json.loads((args.workdir / "data.json").read_text())
    method = args.child
    if method == "ftbot":
        metrics = run_ftbot(args, data)
    elif method in TRL_METHODS:
        metrics = run_trl(method, args, data)
    else:
        metrics = run_trainer(method, args, data)
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
    over its repeats, the highest peak memory, and the median losses (on CPU every repeat gives the same
    losses: same seed, same data order)."""

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
            "train_loss_last10": statistics.median(r["train_loss_last10"] for r in mine),
            "eval_loss": statistics.median(r["eval_loss"] for r in mine),
            "eval_losses": [r["eval_loss"] for r in mine],
            "checks": {k: mine[0][k] for k in mine[0] if k.startswith("trl_")},
            "bytes_per_param": mine[0]["bytes_per_param"],
            "tokens": mine[0]["tokens"],
            "target_tokens": mine[0]["target_tokens"],
            "steps": mine[0]["steps"],
            "device": mine[0]["device"],
            "threads": mine[0]["threads"],
        }
    return summary


def _table(summary: dict[str, dict[str, Any]], *, sequential: bool) -> str:
    rows = [
        "| method | tokens/s (wall) | tokens per CPU-s | peak memory | rise in training "
        "| train loss (last 10) | eval loss | steps | real tokens | target tokens (per step) "
        "| each run: tokens/s, per CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        rows.append(
            f"| {method} | {s['tokens_per_s']:.0f} | {s['tokens_per_cpu_s']:.0f} "
            f"| {s['peak_bytes'] / 2**20:.0f} MiB | {s['rise_bytes'] / 2**20:.0f} MiB "
            f"| {s['train_loss_last10']:.3f} | {s['eval_loss']:.3f} | {s['steps']} | {s['tokens']} "
            f"| {s['target_tokens']} ({s['target_tokens'] / max(s['steps'], 1):.1f}) "
            f"| {'; '.join(f'{w}, {c}' for w, c in s['each_run'])} |"
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
    for method, s in summary.items():
        if len({round(loss, 6) for loss in s["eval_losses"]}) > 1:
            rows.append(f"{method}: eval losses differ between repeats: {s['eval_losses']}")
        if s["checks"]:
            c = s["checks"]
            rows.append(
                f"{method} inputs checked: {c['trl_sequences_checked']} sequences with encode_chat's ids and "
                f"labels; a padding-free row of {c['trl_row_sequences']} sequences against them run alone: "
                f"max |logit diff| "
                f"{c['trl_packed_logit_diff']:.1e} (all-ones mask, sequences attending to each other: "
                f"{c['trl_leaky_logit_diff']:.2f})"
            )
    ours = summary.get("ftbot")
    for name in METHODS[:-1]:
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


def _child_env() -> dict[str, str]:
    # Everything is local (the tiny model is built in the work folder): never reach for the Hub.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


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
                _child_command(method, args, workdir),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=_child_env(),
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
                env=_child_env(),
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
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s): {', '.join(unknown)}")
    if set(methods) & set(TRL_METHODS) and importlib.util.find_spec("trl") is None:
        raise SystemExit("the TRL methods need the bench extra: .venv/bin/pip install -e '.[train,bench]'")
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
