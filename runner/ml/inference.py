"""Batched, deterministic generation with a base model and (optionally) a trained LoRA adapter.

Used by evaluation jobs and tests: prompts are rendered with the chat template saved next to the
adapter (so inference formats prompts exactly as training did), left-padded into batches of similar
length, and decoded greedily. Imports torch & friends, so only workers import it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from runner.ml.model import load_base_model, load_tokenizer, pick_device

__all__ = ["Generation", "LabelChoice", "answer_ids", "choose_labels", "generate", "load_for_inference"]


@dataclass(frozen=True)
class Generation:
    """One model answer."""

    text: str
    """The generated text, special tokens removed, surrounding whitespace stripped."""
    prompt_tokens: int
    """Tokens of the rendered prompt (padding excluded)."""
    output_tokens: int
    """Tokens generated, the end-of-turn token included, padding after it excluded."""
    latency_s: float
    """Wall time of the batch this answer was generated in."""


def load_for_inference(base_model: str, adapter_dir: Path | None, *, quantize: bool) -> tuple[Any, Any]:
    """Load a base model, attach an adapter if given, and ready both for batched generation.

    Args:
        base_model: Hugging Face id or local folder of the base model.
        adapter_dir: A folder written by :func:`runner.ml.loop.train`, or None for the bare base.
        quantize: Load the base in 4-bit NF4 (as training did with ``quantize=True``).

    Returns:
        ``(model, tokenizer)``: the model in eval mode on :func:`runner.ml.model.pick_device`; the
        tokenizer from ``adapter_dir`` when it holds one (else the base's), padding on the left.

    Raises:
        OSError: a model, adapter or tokenizer cannot be found.
    """
    device = pick_device()
    model = load_base_model(base_model, quantize=quantize, device=device)
    tokenizer_source: str | Path = base_model
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if (Path(adapter_dir) / "tokenizer_config.json").exists():
            tokenizer_source = adapter_dir
    model.eval()
    tokenizer = load_tokenizer(tokenizer_source)
    tokenizer.padding_side = "left"
    return model, tokenizer


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids if i is not None})


def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> list[Generation]:
    """Greedy answers to conversations that end before the assistant's turn.

    Prompts are rendered with ``add_generation_prompt=True`` and sorted by length into batches (so
    batches carry little padding), then the answers are returned in the input order.

    Args:
        model: From :func:`load_for_inference`.
        tokenizer: From :func:`load_for_inference` (left padding).
        conversations: Message lists without the assistant answer.
        max_new_tokens: Most tokens to generate per answer.
        batch_size: Conversations per ``generate`` call.

    Returns:
        One :class:`Generation` per conversation, in the same order.

    Raises:
        ValueError: ``max_new_tokens`` or ``batch_size`` is below 1.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens and batch_size must be at least 1, got {max_new_tokens}, {batch_size}"
        )
    prompts = [
        str(tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True))
        for c in conversations
    ]
    # The template writes BOS itself where it wants one; the tokenizer must not add another.
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    stop_ids = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id
    device = next(model.parameters()).device
    results: dict[int, Generation] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer(
            [prompts[i] for i in chunk], add_special_tokens=False, padding=True, return_tensors="pt"
        ).to(device)
        began = time.perf_counter()
        with torch.no_grad():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
            )
        latency = time.perf_counter() - began
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        for row, index in enumerate(chunk):
            tokens = new_tokens[row]
            end = next((k + 1 for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
            results[index] = Generation(
                text=tokenizer.decode(tokens[:end], skip_special_tokens=True).strip(),
                prompt_tokens=lengths[index],
                output_tokens=end,
                latency_s=latency,
            )
    return [results[i] for i in range(len(prompts))]


@dataclass(frozen=True)
class LabelChoice:
    """The label a model finds most likely after a prompt, and how likely it finds each."""

    text: str
    """The chosen label (the highest score)."""
    scores: dict[str, float]
    """Per label: the summed log-probability of its answer tokens (see :func:`choose_labels`)."""
    prompt_tokens: int
    """Tokens of the rendered prompt."""
    output_tokens: int
    """Tokens of the chosen label's answer, the end-of-turn token included."""
    latency_s: float
    """Wall time of this example's forward pass."""


def answer_ids(
    tokenizer: Any, conversation: Sequence[Mapping[str, str]], answer: str, stop_ids: Sequence[int] = ()
) -> tuple[list[int], list[int]]:
    """The token ids of the prompt and of ``answer`` as the assistant's reply, as training sees them.

    The chat template renders the conversation twice, without and with the answer; the answer's
    tokens are what the second adds, up to and including the end-of-turn token (what follows it,
    such as a newline between turns, is not part of the answer). Where the template does not render
    the answer after the prompt, the answer is the label followed by the EOS token.

    Args:
        tokenizer: With a chat template.
        conversation: Message lists without the assistant answer.
        answer: The assistant's reply to score.
        stop_ids: End-of-turn token ids besides the tokenizer's EOS (the model's generation config).

    Returns:
        ``(prompt_ids, answer_ids)``; their concatenation is the sequence to score.
    """
    prompt = str(
        tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
    )
    answered = str(
        tokenizer.apply_chat_template(
            [*conversation, {"role": "assistant", "content": answer}], tokenize=False
        )
    )
    # A template that rewrites earlier turns once answered (some strip reasoning) gets the plain form.
    tail_text = answered[len(prompt) :] if answered.startswith(prompt) else answer + str(tokenizer.eos_token)
    # Prompt and answer are encoded apart: the boundary after the generation prompt is a turn marker.
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(tail_text, add_special_tokens=False)["input_ids"]
    stops = {tokenizer.eos_token_id, *stop_ids}
    end = next((k + 1 for k, t in enumerate(tail) if t in stops), len(tail))
    return prompt_ids, tail[:end]


def choose_labels(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    labels: Sequence[str],
) -> list[LabelChoice]:
    """Classify by likelihood: for each conversation, the label whose answer the model finds likeliest.

    The score of a label is the sum of the log-probabilities of its answer tokens (the label's own
    tokens and the end-of-turn token) after the prompt: the log-probability that the model's whole
    reply is exactly that label. A sum, not a per-token mean: a mean would favour long labels whose
    later tokens follow from the first. No text is generated or parsed, so the score measures which
    label the model prefers, not whether it answers in the expected format. Per conversation the
    prompt runs once, and the answers of all labels then go through one batched forward pass on
    copies of the prompt's key/value cache (right-padded), so a long k-shot prompt is not recomputed
    per label; logits are computed for the answer positions only.

    Args:
        model: From :func:`load_for_inference`.
        tokenizer: From :func:`load_for_inference`.
        conversations: Message lists without the assistant answer.
        labels: The closed label set (at least one).

    Returns:
        One :class:`LabelChoice` per conversation, in the same order; ties go to the earlier label.

    Raises:
        ValueError: ``labels`` is empty.
    """
    if not labels:
        raise ValueError("choose_labels needs at least one label")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop_ids = _stop_ids(model, tokenizer)
    choices = []
    for conversation in conversations:
        pairs = [answer_ids(tokenizer, conversation, label, stop_ids) for label in labels]
        prompt = pairs[0][0]
        answer_width = max(len(a) for _, a in pairs)
        # Right padding: a pad only ever follows the answer it pads, so causal attention never sees it.
        answers = torch.tensor([a + [pad_id] * (answer_width - len(a)) for _, a in pairs], device=device)
        began = time.perf_counter()
        with torch.no_grad():
            # The prompt runs once; every label's answer then runs on a copy of its key/value cache.
            first = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
            cache = first.cache
            cache.batch_repeat_interleave(len(labels))
            rest = model(input_ids=answers, cache=cache, use_cache=True).logits
        latency = time.perf_counter() - began
        # Logits before each answer token: the prompt's last position, then the answer's own positions.
        logits = torch.cat([first.logits[:, -1:].expand(len(labels), -1, -1), rest[:, :-1]], dim=1)
        picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, answers.unsqueeze(-1)).squeeze(-1)
        scores = {
            label: float(picked[row, : len(answer)].sum())
            for row, (label, (_, answer)) in enumerate(zip(labels, pairs, strict=True))
        }
        best = max(labels, key=lambda label: scores[label])
        choices.append(
            LabelChoice(
                text=best,
                scores=scores,
                prompt_tokens=len(pairs[0][0]),
                output_tokens=len(pairs[labels.index(best)][1]),
                latency_s=latency,
            )
        )
    return choices
