"""Training configuration and progress: plain data, no torch, so the bot can validate a request.

`TrainConfig` is what `/finetune train <project> key=value …` resolves to and what a run stores;
`runner.ml` (which loads torch) consumes it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.core.exceptions import FtbotError


class TrainingCancelled(FtbotError):
    """``should_stop()`` returned True: training stopped and nothing was written to ``out_dir``."""


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every knob of a training run; the resolved copy is saved as ``train_config.json``."""

    base_model: str
    """Hugging Face model id or local folder of the base model (its chat template is used)."""
    epochs: int = 3
    """Passes over the training examples (early stopping may end sooner)."""
    lr: float = 2e-4
    """Peak learning rate of the LoRA weights (after warmup, then cosine decay to 0)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator: updates are scaled by ``lora_alpha / lora_r``."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input during training, in [0, 1)."""
    target_modules: str = "all-linear"
    """``all-linear`` (every linear layer except the output head) or comma-separated module names."""
    modules_to_save: str = ""
    """Comma-separated modules trained in full and saved with the adapter (``embed_tokens``); empty: none."""
    max_len: int = 2048
    """Longest example in tokens; longer ones are cut at the end (one left with no target is skipped)."""
    batch_tokens: int = 16384
    """Tokens per optimizer step (packed, so nearly all are real tokens); at least ``max_len``."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step; each holds about ``batch_tokens / grad_accum_steps`` tokens."""
    warmup_ratio: float = 0.03
    """Fraction of the optimizer steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay on the LoRA weights."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping threshold; 0 disables clipping."""
    seed: int = 0
    """Seed of python, numpy and torch: LoRA initialization, shuffling and dropout."""
    quantize: bool = True
    """True: base weights in 4-bit NF4, double quantization (QLoRA); False: plain LoRA (``--no-quant``)."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: ~half the activation memory for ~a third less speed."""
    early_stopping_patience: int = 3
    """Evaluations without a lower eval loss before training stops; 0 never stops early."""
    eval_every_steps: int = 0
    """Optimizer steps between evaluations; 0 evaluates at the end of every epoch."""
    max_steps: int = 0
    """Stop after this many optimizer steps (the schedule is sized to it); 0 means no cap."""

    def problems(self) -> list[str]:
        """Every problem with this configuration, one readable sentence each (empty when valid).

        Returns:
            The problems, in field order.
        """
        found: list[str] = []
        if not str(self.base_model).strip():
            found.append("base_model is empty: give a Hugging Face id or a local folder")
        positive_ints = {"epochs": self.epochs, "lora_r": self.lora_r, "max_len": self.max_len}
        positive_ints |= {"batch_tokens": self.batch_tokens, "grad_accum_steps": self.grad_accum_steps}
        for name, value in positive_ints.items():
            if value < 1:
                found.append(f"{name} must be at least 1, got {value}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            found.append(f"lr must be in (0, 1], got {self.lr}")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            found.append(f"lora_alpha must be positive, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            found.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules.strip() or any(not m.strip() for m in self.target_modules.split(",")):
            found.append(
                f"target_modules must be 'all-linear' or comma-separated names, got {self.target_modules!r}"
            )
        if self.max_len >= 1 and self.batch_tokens < self.max_len:
            found.append(f"batch_tokens ({self.batch_tokens}) must be at least max_len ({self.max_len})")
        if self.batch_tokens >= 1 and self.grad_accum_steps > self.batch_tokens:
            found.append(
                f"grad_accum_steps ({self.grad_accum_steps}) exceeds batch_tokens ({self.batch_tokens})"
            )
        if not 0 <= self.warmup_ratio < 1:
            found.append(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            found.append(f"weight_decay must be 0 or more, got {self.weight_decay}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            found.append(f"max_grad_norm must be 0 or more, got {self.max_grad_norm}")
        if self.seed < 0:
            found.append(f"seed must be 0 or more, got {self.seed}")
        for name in ("early_stopping_patience", "eval_every_steps", "max_steps"):
            if getattr(self, name) < 0:
                found.append(f"{name} must be 0 or more, got {getattr(self, name)}")
        return found

    def validate(self) -> None:
        """Check every field at once.

        Raises:
            ValueError: one or more problems; the message lists all of them, one per line.
        """
        found = self.problems()
        if found:
            raise ValueError(_problem_message("invalid training config", found))

    @classmethod
    def from_overrides(cls, base: TrainConfig, overrides: Mapping[str, str]) -> TrainConfig:
        """Apply ``key=value`` overrides (as typed after ``/finetune train <project>``) to ``base``.

        Values are parsed by the field's type: integers (``3``), floats (``1e-4``), booleans
        (``true/false``, ``yes/no``, ``on/off``, ``1/0``) and strings.

        Args:
            base: The configuration to start from (not modified).
            overrides: Field name → value text.

        Returns:
            A new, validated configuration.

        Raises:
            ValueError: unknown keys (with the closest known name), unparsable values, and every
                ``validate()`` problem of the result, all listed in one message.
        """
        types = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        changes: dict[str, Any] = {}
        found: list[str] = []
        for key, text in overrides.items():
            name = key.strip()
            if name not in types:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; known keys: {', '.join(names)}"
                found.append(f"unknown key {key!r}{hint}")
                continue
            try:
                changes[name] = _parse_value(types[name], str(text))
            except ValueError as error:
                found.append(f"{name}={text!r}: {error}")
        config = dataclasses.replace(base, **changes)
        found += config.problems()
        if found:
            raise ValueError(_problem_message("invalid training overrides", found))
        return config

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict.

        Returns:
            ``dataclasses.asdict(self)``.
        """
        return dataclasses.asdict(self)


def _parse_value(kind: Any, text: str) -> Any:
    text = text.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
        raise ValueError("expected true or false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number such as 0.1 or 2e-4") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    return text


def _problem_message(title: str, problems: Sequence[str]) -> str:
    return f"{title} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n" + "\n".join(
        f"- {p}" for p in problems
    )


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
