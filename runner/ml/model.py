"""Loading base models and tokenizers, and readying a model for LoRA training (4-bit NF4 or not)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from runner.core.trainconfig import TrainConfig
from runner.ml.fastlora import speed_up_lora

# Used when the base tokenizer has no chat template: plain role headers, each turn closed by EOS so the
# model learns to stop. Saved with the adapter, so inference renders prompts the same way.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] | capitalize + ':\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)


def pick_device() -> torch.device:
    """The device training and inference run on: the first CUDA GPU if there is one, else the CPU.

    Returns:
        ``cuda:0`` or ``cpu``.
    """
    return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # CPU kernels for bf16 are slow or missing on many CPUs; fp32 is the safe, exact choice.
    return torch.float32


def load_tokenizer(name_or_path: str | Path) -> Any:
    """Load a tokenizer and give it a chat template and pad token if it lacks them.

    Args:
        name_or_path: Hugging Face id or local folder.

    Returns:
        The tokenizer (``FALLBACK_CHAT_TEMPLATE`` set when it had no template; pad = EOS when unset).
    """
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name_or_path: str | Path, *, quantize: bool, device: torch.device | None = None) -> Any:
    """Load a causal LM, in 4-bit NF4 with double quantization when ``quantize``.

    Args:
        name_or_path: Hugging Face id or local folder.
        quantize: 4-bit NF4 + double quantization (compute in bf16 on CUDA, fp32 on CPU) when True;
            the compute dtype unquantized otherwise.
        device: Where to put it; :func:`pick_device` when omitted.

    Returns:
        The model, on ``device``, in eval mode.
    """
    device = device or pick_device()
    dtype = compute_dtype(device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    model: Any = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
    if device.type != "cuda" and not quantize:
        model.to(device)
    model.eval()
    return model


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (all devices).

    Args:
        seed: The seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_model(config: TrainConfig, device: torch.device, *, fast: bool = True) -> Any:
    """The base model (4-bit when ``config.quantize``) with fresh LoRA adapters, ready to train.

    Args:
        config: The run's configuration (base model, quantization, LoRA settings, seed).
        device: Where to train.
        fast: Apply :func:`runner.ml.fastlora.speed_up_lora` (same math, cheaper steps); False leaves
            PEFT's modules as they are (tests compare the two).

    Returns:
        A ``PeftModel`` in eval mode whose only trainable parameters are the adapters (and
        ``modules_to_save``).
    """
    model = load_base_model(config.base_model, quantize=config.quantize, device=device)
    if config.quantize:
        # Freezes the base, casts norms to fp32, and hooks input grads for checkpointing.
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    targets: str | list[str] = config.target_modules.strip()
    if targets != "all-linear":
        targets = [name.strip() for name in config.target_modules.split(",")]
    seed_everything(config.seed)  # LoRA initialization does not depend on how much loading consumed
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=cast(Any, config.lora_alpha),  # PEFT annotates int; alpha / r is computed in float
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=[m.strip() for m in config.modules_to_save.split(",") if m.strip()] or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if fast:
        speed_up_lora(model, device)
    return model


def base_storage(model: Any) -> tuple[float, int]:
    """(bytes per parameter of the quantized linear weights, bytes held by all base weights).

    A 4-bit weight holds its packed data plus its quantization constants (per-block absmax, the
    second-level absmax and code of double quantization). Without quantized layers the first figure is
    the average over all base weights (the element size).
    """
    quant_bytes = quant_params = 0
    total_bytes = total_params = 0
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if "lora_" in name or id(param) in seen:
            continue
        seen.add(id(param))
        size, count = param.data.nbytes, param.numel()
        state = getattr(param, "quant_state", None)
        if state is not None:
            constants = [state.absmax, state.code, getattr(state, "offset", None)]
            if state.nested:
                constants += [state.state2.absmax, state.state2.code]
            size += sum(t.nbytes for t in constants if isinstance(t, torch.Tensor))
            count = math.prod(state.shape)
            quant_bytes += size
            quant_params += count
        total_bytes += size
        total_params += count
    if quant_params:
        return quant_bytes / quant_params, total_bytes
    return total_bytes / max(total_params, 1), total_bytes


def parameter_count(model: Any) -> int:
    """Parameters of a model, a 4-bit weight counted as the weights it stands for, and a weight shared
    by several modules (tied input and output embeddings) counted once."""
    total = 0
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            state = getattr(param, "quant_state", None)
            total += math.prod(state.shape) if state is not None and name == "weight" else param.numel()
    return total
