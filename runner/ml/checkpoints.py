"""Training checkpoints: everything a run needs to go on exactly where it stopped, written atomically.

A checkpoint holds the LoRA adapter (and the best adapter seen so far), the optimizer and scheduler
states, the random generators of python, numpy and torch (CUDA too), the data position (the epoch and
the next step within it; an epoch's batches are a pure function of the seed and the epoch) and the
loop's bookkeeping (loss curve, evaluations, early-stopping counters, token counts). On CPU a run
resumed from it ends bit-for-bit where an uninterrupted run ends (tests/unit/test_checkpoints.py).

The file is written next to its final name, flushed to disk, then renamed over it (``os.replace``),
so a crash leaves the previous checkpoint or the new one, never half of one. ``checkpoint.json``
beside it says which step it holds and its eval loss, for readers without torch.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runner.core.trainconfig import CHECKPOINT_FILE

SUMMARY_FILE = "checkpoint.json"
FORMAT = 1


def rng_state() -> dict[str, Any]:
    """The state of every random generator training draws from (plain data, safe to load back)."""
    kind, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(folder: Path, payload: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Write a checkpoint into ``folder`` (replacing the one there), all or nothing.

    Args:
        folder: The run's checkpoint folder (created if missing).
        payload: Tensors and plain data (``torch.save``'s safe subset: loadable with ``weights_only``).
        summary: Plain data for ``checkpoint.json`` (``step`` at least).

    Returns:
        The checkpoint's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / CHECKPOINT_FILE
    for name, write in (
        (CHECKPOINT_FILE, lambda f: torch.save({"format": FORMAT, **payload}, f)),
        (SUMMARY_FILE, lambda f: f.write(json.dumps(summary, indent=2).encode() + b"\n")),
    ):
        handle, staging = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(handle, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, folder / name)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
    _fsync_folder(folder)
    return final


def load(folder: Path | None) -> dict[str, Any] | None:
    """The checkpoint in ``folder``, or None when there is none.

    Raises:
        ValueError: the file is of another format.
    """
    if folder is None or not (folder / CHECKPOINT_FILE).exists():
        return None
    payload: dict[str, Any] = torch.load(folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{folder / CHECKPOINT_FILE} has format {payload.get('format')}, expected {FORMAT}")
    return payload


def summary(folder: Path) -> dict[str, Any] | None:
    """``checkpoint.json`` of ``folder`` (step, eval loss), or None when there is no checkpoint."""
    path = folder / SUMMARY_FILE
    if not path.exists() or not (folder / CHECKPOINT_FILE).exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
