"""Cheaper LoRA training steps on PEFT's own modules: same math, same adapter files.

:func:`speed_up_lora` is applied to every model ``runner.ml.loop`` trains. Each change computes what
PEFT computes (tests/unit/test_training.py compares losses and gradients with PEFT's own forward), and
each was measured on bench/train_throughput.py's CPU step (4-layer 4-bit tiny Llama, LoRA r=16 on all
linear layers, 6 rows of 256 tokens):

* **Fused LoRA forward.** PEFT computes ``result = base(x).clone() + B(A(dropout(x))) * scaling``: the
  defensive clone, the scaling and the sum are three passes over the layer's whole output, which on
  CPU cost about as much as the low-rank matmuls themselves. Here the up-projection, the scaling and
  the sum are one ``addmm(base(x), A(x'), B^T, alpha=scaling)``. Used when no autocast is active (the
  CPU path; under CUDA autocast PEFT's forward runs, so mixed-precision rounding stays PEFT's).
* **CpuDropout.** torch's CPU dropout draws one Mersenne-Twister number per element; with a dropout in
  front of every adapted projection that was ~20% of the step. :class:`CpuDropout` draws one 64-bit
  word per four elements. In the fused forward its ``1 / (1 - p)`` rescale is folded into ``alpha``.
* **4-bit weights keep their training layout.** On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit
  layer's weights for its inference kernel the first time the layer runs in eval mode without grad
  (as in the evaluation between epochs), and that kernel has no backward: training after the first
  evaluation silently lost every gradient that flows through the base weights to earlier layers.
  :func:`keep_training_layout` turns the repacking off on the model being trained.

Nothing here changes what is saved: the LoRA parameters are PEFT's own ``lora_A``/``lora_B`` weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bitsandbytes as bnb
import torch
from peft.tuners import lora
from peft.tuners.lora import bnb as lora_bnb

__all__ = ["CpuDropout", "SpeedUps", "keep_training_layout", "speed_up_lora"]

# PEFT's plain LoRA linear layers: on nn.Linear and on bitsandbytes' Linear4bit.
_FUSABLE: tuple[type, ...] = (lora.Linear, lora_bnb.Linear4bit)


class CpuDropout(torch.nn.Module):
    """Inverted dropout with a cheaper random source, swapped in for LoRA's dropout on CPU.

    One 64-bit random word per four elements, whose 16-bit lanes are compared with ``p`` (so ``p`` is
    honoured to 1/65536), and one pass to zero: a third of the cost of torch's CPU dropout. Same
    distribution, same seeding (torch's global generator). CUDA keeps torch's fused dropout, which is
    already cheap.

    Args:
        p: Probability of zeroing an element, in [0, 1).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        # Keep an element when its uniform int16 lane is at or above this (a p-quantile of int16).
        self.threshold = round(p * 65536) - 32768

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero elements with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only)."""
        if not self.training or self.p == 0:
            return x
        return self.zero_some(x).mul_(1.0 / (1.0 - self.p))

    def zero_some(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each element zeroed with probability ``p``, not rescaled (a new tensor)."""
        n = x.numel()
        # Uniform over all 64 bits (the full int64 range), i.e. four uniform int16 lanes per word.
        words = torch.empty(((n + 3) // 4,), dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
        lanes = words.view(torch.int16)[:n].view_as(x)
        return torch.where(lanes < self.threshold, 0.0, x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@dataclass(frozen=True)
class SpeedUps:
    """What :func:`speed_up_lora` changed on a model (counts of layers)."""

    fused: int
    cpu_dropouts: int
    training_layout: int


def keep_training_layout(model: torch.nn.Module) -> int:
    """Keep bitsandbytes from repacking 4-bit weights into its CPU inference layout.

    The repacked layout runs through a kernel without a backward, so a model that is trained after
    an evaluation pass must never be repacked. Inference-only models keep the (faster) repacking.

    Args:
        model: Any model; its ``bnb.nn.Linear4bit`` layers are changed in place.

    Returns:
        How many 4-bit layers were changed.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def _fused_forward(
    layer: Any, peft_forward: Callable[..., torch.Tensor], x: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    """``base(x) + scaling * B(A(dropout(x)))`` with the last matmul, scaling and sum in one addmm."""
    adapters = layer.active_adapters
    if (
        layer.disable_adapters
        or layer.merged
        or kwargs
        or args
        or len(adapters) != 1
        or adapters[0] not in layer.lora_A
        or torch.is_autocast_enabled(x.device.type)
    ):
        return peft_forward(x, *args, **kwargs)
    name = adapters[0]
    result = layer.base_layer(x)
    weight_a, weight_b = layer.lora_A[name].weight, layer.lora_B[name].weight
    dropout = layer.lora_dropout[name]
    alpha = layer.scaling[name]
    if isinstance(dropout, CpuDropout) and dropout.training and dropout.p > 0:
        x = dropout.zero_some(x)
        alpha /= 1.0 - dropout.p
    else:
        x = dropout(x)
    low = torch.nn.functional.linear(x.to(weight_a.dtype), weight_a)
    if result.dtype != weight_b.dtype:  # e.g. a half-precision base without autocast: PEFT's casts
        return result + torch.nn.functional.linear(low, weight_b).mul_(alpha).to(result.dtype)
    # In place: the base layer's backward needs its input and weights, never its output.
    result.view(-1, result.shape[-1]).addmm_(low.view(-1, low.shape[-1]), weight_b.t(), alpha=alpha)
    return result


def speed_up_lora(model: torch.nn.Module, device: torch.device) -> SpeedUps:
    """Apply this module's speed-ups to a PEFT LoRA model about to be trained (in place).

    Layers PEFT builds differently (DoRA and other variants, LoRA bias, ``fan_in_fan_out``, dtypes that
    differ between base and adapter) keep PEFT's forward.

    Args:
        model: A ``PeftModel`` with LoRA adapters.
        device: The device it trains on; CpuDropout and the training layout only apply on CPU.

    Returns:
        What was changed.
    """
    fused = dropouts = 0
    for module in model.modules():
        if not isinstance(module, lora.LoraLayer):
            continue
        if device.type == "cpu":
            for name, dropout in module.lora_dropout.items():
                if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                    module.lora_dropout[name] = CpuDropout(dropout.p)
                    dropouts += 1
        plain = (
            type(module) in _FUSABLE
            and not module.lora_variant
            and not any(module.lora_bias.values())
            and not getattr(module, "fan_in_fan_out", False)
        )
        if plain:
            peft_forward = type(module).forward.__get__(module)
            module.forward = functools.partial(_fused_forward, module, peft_forward)
            fused += 1
    layout = keep_training_layout(model) if device.type == "cpu" else 0
    return SpeedUps(fused=fused, cpu_dropouts=dropouts, training_layout=layout)
