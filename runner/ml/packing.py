"""Chat examples as training rows: tokenize with the chat template, mark the targets, pack best-fit.

Every example is rendered with the base model's chat template and tokenized once; only the assistant
turns are trained on (labels are -100 everywhere else). Examples are then packed best-fit-decreasing
into rows as long as the longest example. Each sequence keeps its own ``position_ids`` (restarting at
0) and the attention mask is block-diagonal causal (:func:`packed_attention_mask`), so a sequence never
attends to its row neighbours and a packed row's loss equals the sum of its sequences' losses computed
alone (tests/unit/test_training.py checks it, with a control showing that naive concatenation changes
it). The padding tail of a row is its own segment with no targets.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE_INDEX = -100  # label value that cross_entropy (and every HF loss) skips


@dataclass(frozen=True)
class EncodedExample:
    """One tokenized conversation: ``labels[i]`` is ``input_ids[i]`` on assistant tokens, else -100."""

    input_ids: list[int]
    labels: list[int]

    @property
    def target_count(self) -> int:
        """Tokens the loss is computed on."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], *, generation_prompt: bool) -> str:
    return str(
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    )


def encode_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, str]], *, max_len: int | None = None
) -> EncodedExample:
    """Tokenize a conversation with the tokenizer's chat template, marking assistant tokens as targets.

    The character span of assistant turn ``i`` runs from the end of the rendered conversation up to it
    (with the generation prompt) to the end of the rendered conversation including it, so the target
    is exactly what the model must generate after the template's assistant header, end-of-turn marker
    included. Tokens are mapped to spans through the fast tokenizer's offsets.

    Args:
        tokenizer: A fast tokenizer with a chat template.
        messages: ``[{"role": ..., "content": ...}, ...]``.
        max_len: Keep at most this many tokens (cut at the end).

    Returns:
        The ids and labels (equal length).

    Raises:
        ValueError: the tokenizer is not a fast one, or the template renders a conversation
            differently depending on what follows it (targets could not be located).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("encode_chat needs a fast tokenizer (offset mapping) to locate the assistant tokens")
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        start_text = _render(tokenizer, messages[:index], generation_prompt=True)
        end_text = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (end_text.startswith(start_text) and full.startswith(end_text)):
            raise ValueError(
                "the chat template renders earlier turns differently depending on what follows, "
                "so the assistant tokens cannot be located"
            )
        spans.append((len(start_text), len(end_text)))
    # The template writes BOS itself where it wants one; the tokenizer must not add another.
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids: list[int] = list(encoding["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    for position, (start, end) in enumerate(encoding["offset_mapping"]):
        if end > start and any(lo <= start < hi for lo, hi in spans):
            labels[position] = input_ids[position]
    if max_len is not None:
        input_ids, labels = input_ids[:max_len], labels[:max_len]
    return EncodedExample(input_ids=input_ids, labels=labels)


def pack_best_fit(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Pack sequences into rows of ``row_len`` tokens, best fit decreasing.

    Longest first, each sequence goes into the open row with the least room that still fits it (a new
    row when none does). Rows come out about 98% full for lengths spread over ``[row_len/16, row_len]``.

    Args:
        lengths: Token count of each sequence (each at most ``row_len``).
        row_len: Capacity of a row.

    Returns:
        Rows as lists of sequence indices (in placement order).

    Raises:
        ValueError: a sequence is longer than ``row_len`` or empty.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    open_rows: list[tuple[int, int]] = []  # (room left, row index) of rows with room, kept sorted
    for index in order:
        length = lengths[index]
        if not 0 < length <= row_len:
            raise ValueError(f"sequence {index} has {length} tokens; expected 1..{row_len}")
        slot = bisect.bisect_left(open_rows, (length, -1))  # the tightest row that still fits
        if slot == len(open_rows):
            row, room = len(rows), row_len
            rows.append([])
        else:
            room, row = open_rows.pop(slot)
        rows[row].append(index)
        if room - length > 0:
            bisect.insort(open_rows, (room - length, row))
    return rows


@dataclass
class PackedBatch:
    """Rows of packed sequences ready for the model (all tensors ``[rows, row_len]``)."""

    input_ids: torch.Tensor
    """Token ids; padding uses the tokenizer's pad id."""
    position_ids: torch.Tensor
    """Position within each sequence, restarting at 0 at every sequence (and for the padding tail)."""
    targets: torch.Tensor
    """Next-token targets, already shifted within each sequence: ``-100`` where no loss is taken."""
    real_tokens: int
    """Non-pad tokens in the batch."""
    target_tokens: int
    """Positions with a target."""

    def to(self, device: torch.device | str) -> PackedBatch:
        """Move the tensors to ``device``.

        Args:
            device: Target device.

        Returns:
            A batch on ``device``.
        """
        return dataclasses.replace(
            self,
            input_ids=self.input_ids.to(device, non_blocking=True),
            position_ids=self.position_ids.to(device, non_blocking=True),
            targets=self.targets.to(device, non_blocking=True),
        )


def collate_rows(
    examples: Sequence[EncodedExample], rows: Sequence[Sequence[int]], row_len: int, pad_id: int
) -> PackedBatch:
    """Lay packed rows out as tensors.

    Targets are shifted inside each sequence (the last token of a sequence predicts nothing), so no
    position ever predicts its row neighbour's first token.

    Args:
        examples: The encoded examples the rows refer to.
        rows: Example indices per row (from :func:`pack_best_fit`).
        row_len: Row length; the padding tail fills each row up to it.
        pad_id: Token id written into the padding tail.

    Returns:
        The batch on the CPU.
    """
    input_ids = torch.full((len(rows), row_len), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), row_len), dtype=torch.long)
    targets = torch.full((len(rows), row_len), IGNORE_INDEX, dtype=torch.long)
    real = 0
    for r, row in enumerate(rows):
        cursor = 0
        for index in row:
            example = examples[index]
            n = len(example.input_ids)
            input_ids[r, cursor : cursor + n] = torch.tensor(example.input_ids)
            position_ids[r, cursor : cursor + n] = torch.arange(n)
            targets[r, cursor : cursor + n - 1] = torch.tensor(example.labels[1:])
            cursor += n
        real += cursor
        # The tail restarts at 0 too, so it forms its own segment that no real token attends to.
        position_ids[r, cursor:] = torch.arange(row_len - cursor)
    target_tokens = int((targets != IGNORE_INDEX).sum())
    return PackedBatch(input_ids, position_ids, targets, real, target_tokens)


def packed_attention_mask(position_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask of packed rows: causal within each sequence, closed between sequences.

    A sequence starts wherever ``position_ids`` restarts at 0. This is the mask transformers builds from
    ``position_ids`` when given none, made once per batch in the attention's own dtype: given a boolean
    mask, torch's SDPA converts it to this form in every layer, forward and backward.

    Args:
        position_ids: ``[rows, row_len]`` positions, restarting at 0 at every sequence.
        dtype: The attention's compute dtype.

    Returns:
        ``[rows, 1, row_len, row_len]``: 0 where a query may attend to a key, the dtype's minimum elsewhere.
    """
    segments = (position_ids == 0).cumsum(dim=-1)
    length = position_ids.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()
    blocked = (segments[:, :, None] != segments[:, None, :]) | ~causal
    mask = torch.zeros(blocked.shape, dtype=dtype, device=position_ids.device)
    return mask.masked_fill_(blocked, torch.finfo(dtype).min).unsqueeze(1)
