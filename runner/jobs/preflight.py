"""Before a run is queued: how many tokens it will train on, how long it will take, how many
GPU-hours (worker-hours on CPU) it will cost and roughly how much memory it needs.

Torch-free, so the bot computes it when `/finetune train` is asked. The figures are estimates:

* **Tokens** from the characters of the chat records the job will train on, at
  :data:`CHARS_PER_TOKEN` characters a token (BPE tokenizers of English chat text give 3.5–4.5),
  each example cut at ``max_len``; times the epochs, or ``max_steps`` steps' worth when smaller.
  Where the rule picks the epochs or the batch size (0 in the config), the estimate applies the
  same rule (`runner.core.trainconfig`): its epochs for this many examples, and batches of an
  epoch's tokens over :data:`~runner.core.trainconfig.MIN_STEPS_PER_EPOCH` steps at most.
* **Throughput** measured: the median real tokens/s of the last finished runs of the same base model
  and process count on the same hardware class (``metrics.tokens_per_s``, the training loop's own
  figure; the class is the one the run's worker had, `runner.jobs.hardware`, and the class the new
  run is routed to; without ``FTBOT_HARDWARE_CLASSES``, runs on any worker); without any, a
  documented default (:data:`DEFAULT_TOKENS_PER_S`) scaled by the model's size when it is known.
* **Time** = tokens / throughput, plus the time the same past runs spent outside the training loop
  (loading, evaluating, saving: ``wall_time_s`` less ``train_tokens / tokens_per_s``), or
  :data:`STARTUP_S` without any; **GPU-hours** = time × ``procs × nodes`` (every process's device).
* **Memory** per process, when the base model's ``config.json`` is on disk: 4-bit linear weights
  (~4.13 bits a weight with NF4's constants), embeddings and head in 16 bits, LoRA weights and their
  AdamW states in 32 bits, and activations of one micro-batch (a rough
  ``tokens × hidden × layers × 4`` bytes with gradient checkpointing, ×8 without).

Each run keeps its estimate (``TrainingRun.estimate``); its metrics hold what happened, so
``ftbot runs --json`` shows both and future estimates learn from it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.core.trainconfig import MAX_AUTO_BATCH_TOKENS, MIN_STEPS_PER_EPOCH, TrainConfig, auto_epochs

CHARS_PER_TOKEN = 4.0
# Real tokens/s of a ~135M-parameter base on one worker with no history: the CPU figure measured on
# the tiny model in bench/ is far above what a real 135M model does on CPU; 1,500 tokens/s is a
# modest GPU figure for 135M in 4-bit. Bigger models scale down linearly with their size.
DEFAULT_TOKENS_PER_S = 1500.0
DEFAULT_PARAMS = 135_000_000
STARTUP_S = 30.0  # loading the base model and tokenizing, before the first step
HISTORY_RUNS = 5


@dataclass(frozen=True)
class Estimate:
    """What a run is expected to take."""

    examples: int
    """Training examples."""
    tokens: int
    """Real tokens the training loop will process (all epochs)."""
    tokens_per_s: float
    """Throughput assumed."""
    throughput_source: str
    """``measured on <class> (N runs)``, ``measured (N runs)`` (no classes) or ``default``."""
    seconds: float
    """Expected wall time of the job."""
    gpu_hours: float
    """``seconds × procs × nodes / 3600`` (worker-hours on CPU)."""
    memory_bytes: int | None
    """Peak memory per process, when the base model's size is known."""
    params: int | None
    """Parameters of the base model, when known."""
    hardware_class: str | None = None
    """The hardware class the run is routed to (None without ``FTBOT_HARDWARE_CLASSES``)."""
    queue: str = "train"
    """Its train queue."""
    procs: int = 1
    """Processes (GPUs) it will use, on all its nodes together."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def example_tokens(records: Iterable[Mapping[str, Any]], max_len: int) -> list[int]:
    """Estimated tokens of each chat record (its messages' characters, cut at ``max_len``)."""
    counts = []
    for record in records:
        chars = sum(len(str(m.get("content", ""))) + 8 for m in record.get("messages", []))  # + role markup
        counts.append(min(max_len, max(1, round(chars / CHARS_PER_TOKEN))))
    return counts


def model_shape(config_json: Path) -> dict[str, int] | None:
    """hidden size, layers, intermediate size and vocabulary of a model folder's ``config.json``."""
    try:
        data = json.loads(config_json.read_text())
    except (OSError, ValueError):
        return None
    keys = {
        "hidden": "hidden_size",
        "layers": "num_hidden_layers",
        "intermediate": "intermediate_size",
        "vocab": "vocab_size",
    }
    shape = {name: data.get(key) for name, key in keys.items()}
    if not all(isinstance(value, int) and value > 0 for value in shape.values()):
        return None
    shape["tied"] = int(bool(data.get("tie_word_embeddings", False)))
    return shape


def _params(shape: Mapping[str, int]) -> tuple[int, int]:
    """(linear weights in the decoder layers, embedding and head weights)."""
    hidden, layers, intermediate, vocab = (
        shape["hidden"],
        shape["layers"],
        shape["intermediate"],
        shape["vocab"],
    )
    linear = layers * (4 * hidden * hidden + 3 * hidden * intermediate)
    embeddings = vocab * hidden * (1 if shape["tied"] else 2)
    return linear, embeddings


def memory_bytes(config: TrainConfig, shape: Mapping[str, int], row_tokens: int) -> int:
    """Rough peak memory of one training process (see the module docstring)."""
    linear, embeddings = _params(shape)
    hidden, layers, intermediate = shape["hidden"], shape["layers"], shape["intermediate"]
    base = linear * (4.13 / 8 if config.quantize else 2) + embeddings * 2
    lora = config.lora_r * layers * (4 * 2 * hidden + 3 * (hidden + intermediate))
    trainable = lora * (4 + 4 + 8)  # weights, gradients, AdamW's two states (fp32)
    tokens = max(row_tokens, config.batch_tokens // (config.grad_accum_steps * config.procs * config.nodes))
    activations = tokens * hidden * layers * (4 if config.gradient_checkpointing else 32)
    return int(base + trainable + activations)


def estimate(
    config: TrainConfig,
    records: Sequence[Mapping[str, Any]],
    *,
    history: Iterable[Mapping[str, Any]] = (),
    shape: Mapping[str, int] | None = None,
    hardware_class: str | None = None,
    queue: str = "train",
) -> Estimate:
    """The estimate for training ``records`` with ``config``.

    Args:
        config: The run's configuration.
        records: The chat records of the training split.
        history: ``metrics`` of finished runs of the same base model and ``procs`` (and hardware
            class, when there are classes), newest first.
        shape: The base model's shape (:func:`model_shape`), when known.
        hardware_class: The class the run goes to (named in the throughput's source).
        queue: Its train queue.

    Returns:
        The estimate.
    """
    counts = example_tokens(records, config.max_len)
    per_epoch = sum(counts)
    tokens = per_epoch * (config.epochs or auto_epochs(len(counts)))
    if config.max_steps:
        per_step = config.batch_tokens or min(MAX_AUTO_BATCH_TOKENS, -(-per_epoch // MIN_STEPS_PER_EPOCH))
        tokens = min(tokens, config.max_steps * per_step)
    measured = [
        float(m["tokens_per_s"])
        for m in list(history)[:HISTORY_RUNS]
        if isinstance(m.get("tokens_per_s"), int | float) and m["tokens_per_s"] > 0
    ]
    params = sum(_params(shape)) if shape else None
    if measured:
        where = f" on {hardware_class}" if hardware_class else ""
        runs = f"{len(measured)} run{'s' if len(measured) > 1 else ''}"
        speed, source = statistics.median(measured), f"measured{where} ({runs})"
    else:
        speed = (
            DEFAULT_TOKENS_PER_S * DEFAULT_PARAMS / (params or DEFAULT_PARAMS) * config.procs * config.nodes
        )
        source = "default"
    # What the same runs spent outside the training loop (loading, evaluating, saving), measured too.
    overheads = [
        float(m["wall_time_s"]) - float(m["train_tokens"]) / float(m["tokens_per_s"])
        for m in list(history)[:HISTORY_RUNS]
        if all(
            isinstance(m.get(k), int | float) and m[k] > 0
            for k in ("wall_time_s", "train_tokens", "tokens_per_s")
        )
    ]
    startup = max(0.0, statistics.median(overheads)) if overheads else STARTUP_S
    seconds = startup + tokens / speed
    return Estimate(
        examples=len(counts),
        tokens=tokens,
        tokens_per_s=round(speed, 1),
        throughput_source=source,
        seconds=round(seconds, 1),
        gpu_hours=round(seconds * config.procs * config.nodes / 3600, 4),
        memory_bytes=memory_bytes(config, shape, max(counts, default=1)) if shape else None,
        params=params,
        hardware_class=hardware_class,
        queue=queue,
        procs=config.procs * config.nodes,
    )


def local_config_json(base_model: str, models_dir: Path) -> Path | None:
    """The ``config.json`` of a base model on disk (a folder, or a pulled name), if any."""
    folder = Path(base_model) if base_model.startswith("/") else models_dir / base_model
    path = folder / "config.json"
    return path if path.is_file() else None
