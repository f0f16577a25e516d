"""Warm models for the predict worker: base models loaded once, recent adapters kept beside them.

A predict worker answers many small requests; loading a base model (and attaching an adapter) for
each would cost seconds per answer. `WarmModels` keeps each base model it has used (one per base and
quantization) wrapped in a PEFT model that holds several adapters at once, switches between them
with ``set_adapter``, and evicts the least recently used adapter past `max_adapters`. Imports torch
(through `runner.ml.inference`) when first used, so only predict workers pay for it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """What answers a request: a base model and, optionally, one adapter on it."""

    name: str
    """The served name (``<project>-v<N>``): the adapter's name here and on an inference server."""
    base_model: str
    adapter_dir: str | None
    quantize: bool


@dataclass
class _Base:
    model: Any
    tokenizer: Any
    adapters: OrderedDict[str, Any] = field(default_factory=OrderedDict)  # name → tokenizer, LRU order


@dataclass
class LoadCounts:
    """How often models were loaded (what "warm" saves; tests and benchmarks read it)."""

    bases: int = 0
    adapters: int = 0
    evictions: int = 0


class WarmModels:
    """Base models and a bounded cache of adapters, loaded on first use and kept (thread-safe).

    Args:
        max_adapters: Adapters kept loaded across all bases; the least recently used one is
            unloaded when another is needed.
    """

    def __init__(self, max_adapters: int = 4) -> None:
        if max_adapters < 1:
            raise ValueError("max_adapters must be at least 1")
        self.max_adapters = max_adapters
        self.counts = LoadCounts()
        self._bases: dict[tuple[str, bool], _Base] = {}
        self._order: OrderedDict[tuple[tuple[str, bool], str], None] = OrderedDict()
        self._lock = threading.Lock()

    def loaded_adapters(self) -> list[str]:
        """Names of the adapters loaded now, least recently used first."""
        return [name for (_key, name) in self._order]

    def _base(self, ref: ModelRef) -> _Base:
        key = (ref.base_model, ref.quantize)
        if key not in self._bases:
            from runner.ml.inference import load_for_inference

            model, tokenizer = load_for_inference(ref.base_model, None, quantize=ref.quantize)
            self._bases[key] = _Base(model, tokenizer)
            self.counts.bases += 1
        return self._bases[key]

    def _activate(self, ref: ModelRef) -> tuple[Any, Any]:
        """The model with `ref`'s adapter active (loading it, evicting another, if need be)."""
        from peft import PeftModel

        from runner.ml.model import load_tokenizer

        key = (ref.base_model, ref.quantize)
        base = self._base(ref)
        if ref.adapter_dir is None:
            return base.model, base.tokenizer
        if ref.name not in base.adapters:
            while len(self._order) >= self.max_adapters:
                self._evict()
            if isinstance(base.model, PeftModel):
                base.model.load_adapter(ref.adapter_dir, adapter_name=ref.name)
            else:
                base.model = PeftModel.from_pretrained(base.model, ref.adapter_dir, adapter_name=ref.name)
            base.model.eval()
            folder = Path(ref.adapter_dir)
            tokenizer = base.tokenizer
            if (folder / "tokenizer_config.json").exists():
                tokenizer = load_tokenizer(folder)
                tokenizer.padding_side = "left"
            base.adapters[ref.name] = tokenizer
            self.counts.adapters += 1
        self._order[(key, ref.name)] = None
        self._order.move_to_end((key, ref.name))
        base.adapters.move_to_end(ref.name)
        base.model.set_adapter(ref.name)
        return base.model, base.adapters[ref.name]

    def _evict(self) -> None:
        (key, name), _ = self._order.popitem(last=False)
        base = self._bases[key]
        base.adapters.pop(name, None)
        base.model.delete_adapter(name)
        self.counts.evictions += 1
        gc.collect()
        log.info("unloaded adapter %s", name)

    def generate(
        self,
        ref: ModelRef,
        conversations: Sequence[Sequence[Mapping[str, str]]],
        *,
        max_new_tokens: int,
        batch_size: int = 16,
    ) -> list[Any]:
        """Greedy answers (with their probabilities) from `ref`, in the order of `conversations`.

        Returns:
            One `runner.ml.inference.Generation` per conversation.
        """
        from runner.ml.inference import generate

        with self._lock:
            model, tokenizer = self._activate(ref)
            # The base model alone: the loaded adapters are switched off for this batch.
            bare = ref.adapter_dir is None and hasattr(model, "disable_adapter")
            with model.disable_adapter() if bare else contextlib.nullcontext():
                return generate(
                    model,
                    tokenizer,
                    conversations,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    scores=True,
                )
