"""Training configuration and progress: plain data, no torch, so the bot can validate a request.

`TrainConfig` is what `/finetune train <project> key=value …` resolves to and what a run stores;
`runner.ml` (which loads torch) consumes it. It is a pydantic model: every field carries its bounds
and a docstring, and one validation (`check`) reports every problem of a request at once, in
sentences short enough for one Slack message.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from runner.core.exceptions import FtbotError


class TrainingCancelled(FtbotError):
    """``should_stop()`` returned True: training stopped and nothing was written to ``out_dir``."""


CHECKPOINT_FILE = "checkpoint.pt"
"""A run's checkpoint, in its checkpoint folder (``runner.jobs.runs.checkpoint_dir``)."""


class TrainingPaused(FtbotError):
    """``should_pause()`` returned True: a checkpoint was written and training stopped there."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training paused at step {step}")
        self.step = step
        """The optimizer steps done; the checkpoint resumes from the step after it."""


# --------------------------------------------------------------------------------------------------
# Base model sources
# --------------------------------------------------------------------------------------------------

PULLED_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
"""A model pulled with ``ftbot models pull NAME`` (stored under ``FTBOT_MODELS_DIR/NAME``)."""
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
"""A Hugging Face model id, ``org/name``."""
MAX_BASE_MODEL_CHARS = 512  # the width of model_version.base_model


def base_model_problem(value: str, local_roots: Mapping[str, Path] | None = None) -> str | None:
    """Why ``value`` cannot be a base model, or None when it can.

    Accepted: a pulled model name (lowercase letters, digits, ``.``, ``_``, ``-``), a Hugging Face id
    ``org/name`` (one slash), or an absolute path of a local folder, with no ``..`` anywhere. URLs
    and relative paths never are. With ``local_roots`` (variable name → folder), a path must also
    lie inside one of the roots once symlinks are resolved.

    Args:
        value: What the request or ``FTBOT_BASE_MODEL`` gives.
        local_roots: The allowed folders, named by the variable that sets each; None: any folder.

    Returns:
        A sentence naming what is accepted, or None.
    """
    text = value.strip()
    roots = local_roots or {}
    folders = " or ".join(f"{name} ({folder})" for name, folder in roots.items())
    where = f"a folder in {folders}" if folders else "the absolute path of a local folder"
    accepted = f"give a pulled model name (e.g. smollm2-135m), a Hugging Face id (org/name) or {where}"
    if not text:
        return f"base_model is empty: {accepted}"
    shown = _shown(text)
    refused = f"base_model {shown} is not accepted: {accepted}"
    if len(text) > MAX_BASE_MODEL_CHARS or ".." in text or not text.isprintable():
        return refused
    if PULLED_NAME.fullmatch(text) or HUB_ID.fullmatch(text):
        return None
    if not text.startswith("/"):
        return refused  # a URL (scheme://…), a relative path or anything else
    if local_roots is not None:
        resolved = Path(text).resolve()
        if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots.values()):
            return refused
    return None


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

# Comma-separated module names (``q_proj,v_proj``) or ``all-linear``.
_MODULE_LIST = re.compile(r"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")


class TrainConfig(BaseModel):
    """Every knob of a training run; the resolved copy is saved as ``train_config.json``.

    Construction validates (raising ``ValueError`` that lists every problem); instances are frozen.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, use_attribute_docstrings=True
    )

    base_model: str
    """Pulled model name, Hugging Face id (``org/name``) or local folder of the base model (its chat
    template is used)."""
    epochs: int = Field(0, ge=0, le=100)
    """Passes over the training examples (early stopping may end sooner); 0: chosen from the number of
    examples (:func:`auto_epochs`)."""
    lr: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    """Peak learning rate of the LoRA weights (after warmup, then cosine decay to 0); 0: chosen from the
    base model's size (:func:`auto_lr`)."""
    lora_r: int = Field(16, ge=1, le=512)
    """LoRA rank."""
    lora_alpha: float = Field(32.0, gt=0, allow_inf_nan=False)
    """LoRA scaling numerator: updates are scaled by ``lora_alpha / lora_r``."""
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA input during training, in [0, 1)."""
    target_modules: str = Field("all-linear", max_length=1000)
    """``all-linear`` (every linear layer except the output head) or comma-separated module names."""
    modules_to_save: str = Field("", max_length=1000)
    """Comma-separated modules trained in full and saved with the adapter (``embed_tokens``); empty: none."""
    max_len: int = Field(2048, ge=16, le=32768)
    """Longest example in tokens; longer ones are cut at the end (one left with no target is skipped)."""
    batch_tokens: int = Field(0, ge=0, le=1_048_576)
    """Tokens per optimizer step (packed, so nearly all are real tokens); at least ``max_len`` when
    given; 0: sized from the data so an epoch has at least :data:`MIN_STEPS_PER_EPOCH` steps
    (:func:`auto_batch_rows`)."""
    grad_accum_steps: int = Field(1, ge=1, le=1024)
    """Micro-batches per optimizer step; each holds about ``batch_tokens / grad_accum_steps`` tokens."""
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    """Fraction of the optimizer steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    """AdamW decoupled weight decay on the LoRA weights."""
    max_grad_norm: float = Field(1.0, ge=0, allow_inf_nan=False)
    """Gradient-norm clipping threshold; 0 disables clipping."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seed of python, numpy and torch: LoRA initialization, shuffling and dropout (numpy takes 32 bits)."""
    quantize: bool = True
    """True: base weights in 4-bit NF4, double quantization (QLoRA); False: plain LoRA (``--no-quant``)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: ~half the activation memory for ~a third less speed."""
    early_stopping_patience: int = Field(3, ge=0, le=100)
    """Evaluations without a lower eval loss before training stops; 0 never stops early."""
    eval_every_steps: int = Field(0, ge=0, le=100_000)
    """Optimizer steps between evaluations; 0 evaluates at the end of every epoch."""
    max_steps: int = Field(0, ge=0, le=1_000_000)
    """Stop after this many optimizer steps (the schedule is sized to it); 0 means no cap."""
    keep_best: bool = True
    """True: the adapter kept is the one of the lowest eval loss over every evaluation and checkpoint;
    False: the last step's."""
    procs: int = Field(1, ge=1, le=64)
    """Processes training together on one machine, one per GPU (CPU: gloo processes); above 1 the job
    launches them with ``torchrun`` (DDP: the 4-bit base must fit each device)."""
    nodes: int = Field(1, ge=1, le=64)
    """Machines training together, ``procs`` processes on each; above 1 the job launches the run on
    several machines (``FTBOT_MULTINODE``: torchrun on fixed nodes, or a Kubernetes TrainJob) and the
    global batch is dealt among ``nodes × procs`` processes."""
    checkpoint_every: int = Field(50, ge=0, le=1_000_000)
    """Optimizer steps between checkpoints (adapter, optimizer, scheduler, RNG, data position) that a
    paused or interrupted run resumes from, each with its eval loss (a candidate for the adapter
    kept); 0: only when paused."""

    @model_validator(mode="before")
    @classmethod
    def _all_problems_at_once(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            checked = check(data)
            if checked.problems:
                raise ValueError(checked.message("invalid training config"))
        return data

    def problems(self) -> list[str]:
        """Every problem with this configuration, one readable sentence each (empty when valid).

        Returns:
            The problems, in field order (always empty for a constructed, frozen instance).
        """
        return check(self.to_dict()).problems

    def validate(self) -> None:  # type: ignore[override]  # pydantic's deprecated classmethod of the same name
        """Check every field at once.

        Raises:
            ValueError: one or more problems; the message lists all of them, one per line.
        """
        checked = check(self.to_dict())
        if checked.problems:
            raise ValueError(checked.message("invalid training config"))

    @classmethod
    def from_overrides(
        cls,
        base: TrainConfig | Mapping[str, Any],
        overrides: Mapping[str, str],
        *,
        local_roots: Mapping[str, Path] | None = None,
    ) -> TrainConfig:
        """Apply ``key=value`` overrides (as typed after ``/finetune train <project>``) to ``base``.

        Values are parsed by the field's type: integers (``3``), floats (``1e-4``), booleans
        (``true/false``, ``yes/no``, ``on/off``, ``1/0``) and strings.

        Args:
            base: The configuration (or field values, e.g. just ``base_model``) to start from; not
                modified.
            overrides: Field name → value text.
            local_roots: Folders a local ``base_model`` must lie in (see :func:`base_model_problem`);
                None accepts any absolute folder.

        Returns:
            A new, validated configuration.

        Raises:
            ValueError: unknown keys (briefly, with the closest known name), unparsable values, values
                out of bounds and a refused ``base_model``, all in one message of at most
                :data:`MAX_MESSAGE_CHARS` characters.
        """
        values = dict(base.to_dict() if isinstance(base, TrainConfig) else base)
        values.update({key.strip(): str(text).strip() for key, text in overrides.items()})
        checked = check(values, local_roots=local_roots)
        if checked.config is None:
            raise ValueError(checked.message("invalid training overrides"))
        return checked.config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return self.model_dump()


@cache
def _adapters() -> dict[str, TypeAdapter[Any]]:
    """One validator per field, with the field's own bounds, so each is checked on its own."""
    adapters: dict[str, TypeAdapter[Any]] = {}
    for name, field in TrainConfig.model_fields.items():
        kind: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        adapters[name] = TypeAdapter(kind)
    return adapters


class Checked(NamedTuple):
    """What :func:`check` found."""

    config: TrainConfig | None
    """The configuration, when there is no problem."""
    problems: list[str]
    """One sentence per problem; the unknown keys past the first few share one line."""
    total: int
    """How many problems there are, each unknown key counted."""

    def message(self, title: str) -> str:
        """``title (N problems):`` and one ``- problem`` line each, cut to :data:`MAX_MESSAGE_CHARS`."""
        header = f"{title} ({self.total} problem{'s' if self.total != 1 else ''}):"
        lines = [header]
        size = len(header)
        for index, problem in enumerate(self.problems):
            line = f"- {problem}"
            rest = len(self.problems) - index
            if size + 1 + len(line) + 40 > MAX_MESSAGE_CHARS and rest > 1:
                lines.append(f"- … and {rest} more")
                break
            lines.append(line)
            size += 1 + len(line)
        return "\n".join(lines)


def check(values: Mapping[str, Any], *, local_roots: Mapping[str, Path] | None = None) -> Checked:
    """Validate field values: every problem, one sentence each, and the config when there is none.

    Each field is validated on its own (so one bad value hides no other), then the relations
    between fields whose values are fine.

    Args:
        values: Field name → value (text as typed, or the field's type).
        local_roots: As for :meth:`TrainConfig.from_overrides`.

    Returns:
        The config, or None and the problems: unknown keys first, then in field order.
    """
    fields = TrainConfig.model_fields
    unknown = [key for key in values if key not in fields]
    found = _unknown_key_problems(unknown)
    parsed: dict[str, Any] = {}
    for name, adapter in _adapters().items():
        if name not in values:
            if fields[name].is_required():
                found.append(f"{name} is required")
            continue
        raw = values[name]
        if name == "base_model":
            problem = base_model_problem(str(raw), local_roots)
            if problem is not None:
                found.append(problem)
                continue
        try:
            parsed[name] = adapter.validate_python(raw)
        except ValidationError as exc:
            found.append(_field_problem(name, exc.errors()[0], raw))
    found += _relation_problems(parsed)
    total = len(found) + max(0, len(unknown) - _SHOWN_UNKNOWN_KEYS) - (len(unknown) > _SHOWN_UNKNOWN_KEYS)
    if found:
        return Checked(None, found, total)
    return Checked(TrainConfig.model_construct(**{**_defaults(), **parsed}), [], 0)


def _defaults() -> dict[str, Any]:
    return {
        name: field.get_default()
        for name, field in TrainConfig.model_fields.items()
        if not field.is_required()
    }


def _relation_problems(v: Mapping[str, Any]) -> list[str]:
    found = []
    if "target_modules" in v and not _MODULE_LIST.fullmatch(v["target_modules"]):
        found.append(
            f"target_modules must be 'all-linear' or comma-separated names, got {_shown(v['target_modules'])}"
        )
    if v.get("modules_to_save") and not _MODULE_LIST.fullmatch(v["modules_to_save"]):
        found.append(f"modules_to_save must be comma-separated names, got {_shown(v['modules_to_save'])}")
    if "max_len" in v and v.get("batch_tokens") and v["batch_tokens"] < v["max_len"]:
        found.append(f"batch_tokens ({v['batch_tokens']}) must be at least max_len ({v['max_len']})")
    if "grad_accum_steps" in v and v.get("batch_tokens") and v["grad_accum_steps"] > v["batch_tokens"]:
        found.append(f"grad_accum_steps ({v['grad_accum_steps']}) exceeds batch_tokens ({v['batch_tokens']})")
    return found


# --------------------------------------------------------------------------------------------------
# Defaults that train: epochs, learning rate and batch size chosen from the model and the data
# --------------------------------------------------------------------------------------------------

MIN_STEPS_PER_EPOCH = 16
"""An epoch takes at least this many optimizer steps when the data fills that many packed rows.

A fixed 16,384-token batch gave one step per epoch on a few hundred examples: SmolLM2-135M stayed at
0.33 accuracy on a 5-label routing set after an epoch, where 1,024-token batches (about 20 steps)
reached 0.56 in the same time. Adam needs steps, not tokens, to move the adapters."""
MAX_AUTO_BATCH_TOKENS = 16_384
"""The largest batch the rule picks: past it, bigger datasets get more steps rather than bigger ones."""


def auto_lr(base_params: int) -> float:
    """Peak LoRA learning rate for a base model of ``base_params`` parameters (tied weights once).

    Small models take (and need) larger LoRA steps: 1e-3 trained SmolLM2-135M where 2e-4 barely moved
    it; the usual 2e-4 is kept for 3B and up, 5e-4 between.
    """
    if base_params < 500_000_000:
        return 1e-3
    if base_params < 3_000_000_000:
        return 5e-4
    return 2e-4


def auto_epochs(train_examples: int) -> int:
    """Passes over the data: 3 under 1,000 examples, 2 under 10,000, 1 beyond (early stopping may end
    sooner). Small sets need repeats to take; large ones overfit sooner than they gain."""
    if train_examples < 1_000:
        return 3
    if train_examples < 10_000:
        return 2
    return 1


def auto_batch_rows(rows_per_epoch: int, row_len: int, grad_accum_steps: int) -> int:
    """Packed rows per micro-batch so an epoch has at least :data:`MIN_STEPS_PER_EPOCH` optimizer steps.

    Args:
        rows_per_epoch: Rows the training set packs into.
        row_len: Tokens per row.
        grad_accum_steps: Micro-batches per step.

    Returns:
        At least 1; at most what fits :data:`MAX_AUTO_BATCH_TOKENS` per step.
    """
    by_steps = rows_per_epoch // (MIN_STEPS_PER_EPOCH * grad_accum_steps)
    by_tokens = MAX_AUTO_BATCH_TOKENS // (row_len * grad_accum_steps)
    return max(1, min(by_steps, by_tokens))


AUTO_FIELDS = ("epochs", "lr", "batch_tokens")
"""The fields whose 0 means "chosen by the rule above"."""


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------

MAX_MESSAGE_CHARS = 2000
"""A refusal fits one Slack section (3,000 characters) with room for the words around it."""
_SHOWN_UNKNOWN_KEYS = 5
_SHOWN_CHARS = 40


def _shown(value: Any) -> str:
    """``value`` as typed, quoted, cut to a few dozen characters."""
    text = str(value)
    return repr(text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…")


def _unknown_key_problems(unknown: Sequence[str]) -> list[str]:
    """A line for each of the first few unknown keys (those with a close known name first), then a
    count of the rest; the known keys are listed once, after the first key with no close match."""
    names = list(TrainConfig.model_fields)
    hints = {key: difflib.get_close_matches(key[:100], names, n=1) for key in unknown}
    ordered = sorted(unknown, key=lambda key: not hints[key])
    lines = []
    listed_known = False
    for key in ordered[:_SHOWN_UNKNOWN_KEYS]:
        line = f"unknown key {_shown(key)}"
        if hints[key]:
            line += f" (did you mean {hints[key][0]}?)"
        elif not listed_known:
            line += f"; known keys: {', '.join(names)}"
            listed_known = True
        lines.append(line)
    if len(ordered) > _SHOWN_UNKNOWN_KEYS:
        lines.append(f"and {len(ordered) - _SHOWN_UNKNOWN_KEYS} more unknown keys")
    return lines


def _bounds(name: str) -> tuple[Any, bool, Any, bool]:
    """(lower, inclusive, upper, inclusive) of a field; None where unbounded."""
    low: Any = None
    high: Any = None
    low_inclusive = high_inclusive = True
    for item in TrainConfig.model_fields[name].metadata:
        if isinstance(item, Ge):
            low = item.ge
        elif isinstance(item, Gt):
            low, low_inclusive = item.gt, False
        elif isinstance(item, Le):
            high = item.le
        elif isinstance(item, Lt):
            high, high_inclusive = item.lt, False
    return low, low_inclusive, high, high_inclusive


def _range(name: str, too_low: bool) -> str:
    """How a field's bounds read: an interval for a bounded real, else the side that was crossed."""
    low, low_inclusive, high, high_inclusive = _bounds(name)
    if TrainConfig.model_fields[name].annotation is float and low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if too_low:
        if low == 0 and low_inclusive:
            return "0 or more"
        return f"at least {low}" if low_inclusive else f"more than {low}"
    return f"at most {high}" if high_inclusive else f"less than {high}"


_EXPECTED = {
    "int": "expected a whole number",
    "float": "expected a number such as 0.1 or 2e-4",
    "finite": "expected a finite number",
    "bool": "expected true or false",
    "string": "expected text",
}


def _field_problem(name: str, error: Mapping[str, Any], raw: Any) -> str:
    """One sentence for pydantic's first error on field ``name``."""
    kind = str(error["type"])
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        got = str(raw) if len(str(raw)) <= _SHOWN_CHARS else _shown(raw)
        return f"{name} must be {_range(name, kind.startswith('greater'))}, got {got}"
    if kind == "string_too_long":
        return f"{name} is longer than {error['ctx']['max_length']} characters"
    family = "finite" if kind == "finite_number" else kind.split("_")[0]
    expected = _EXPECTED.get(family, str(error["msg"]))
    return f"{name}={_shown(raw)}: {expected}"


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """A snapshot passed to the ``progress`` callback after every optimizer step."""

    epoch: int
    """Current epoch, 1-based."""
    step: int
    """Optimizer steps done so far."""
    total_steps: int
    """Optimizer steps planned (early stopping may end sooner)."""
    loss: float
    """Training loss of this step (mean cross-entropy per target token)."""
    tokens_per_s: float
    """Real (non-pad) tokens processed per second of training so far."""
    eta_s: float
    """Estimated seconds until the planned steps are done."""
    plan: str = ""
    """The settings the run trains with, in words (what the rule chose marked ``auto``)."""


def describe_plan(config: TrainConfig, chosen: Sequence[str], steps_per_epoch: int, total_steps: int) -> str:
    """One line for people: ``lr 0.001 (auto) · 1,024 tokens/step (auto) · 3 epochs (auto) · 48 steps``.

    Args:
        config: The resolved configuration (no 0 left in :data:`AUTO_FIELDS`).
        chosen: The fields the rule chose.
        steps_per_epoch: Optimizer steps per epoch.
        total_steps: Optimizer steps planned.
    """

    def mark(name: str) -> str:
        return " (auto)" if name in chosen else ""

    return (
        f"lr {config.lr:g}{mark('lr')} · {config.batch_tokens:,} tokens/step{mark('batch_tokens')} · "
        f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}{mark('epochs')} · "
        f"{steps_per_epoch} steps/epoch, {total_steps} in all"
    )
