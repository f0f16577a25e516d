"""Hardware classes: which train queue a job goes to, by what it needs, and which queues a worker
serves, by what it has.

``FTBOT_HARDWARE_CLASSES`` names the classes a deployment has, smallest first, as
``name:gpus:gpu_mem`` (``cpu:0:0,a10:1:24G,h100x8:8:80G``). A class's queue is ``train-<name>``. A job
goes to the smallest class that has at least ``procs`` GPUs (a CPU class: ``gpus`` 0 takes only
``procs`` CPU processes, and no memory bound) and at least the preflight's memory estimate per GPU;
a job no class can run is refused when it is asked for, with the reason, never left queued. A worker
started with ``ftbot worker --gpus 8 --gpu-mem 80G`` serves the queue of every class it can stand in
for (as many GPUs or more, as much memory or more), so a big worker takes small jobs when idle.
Without ``FTBOT_HARDWARE_CLASSES`` there is one ``train`` queue, as before.

Pure logic: no Redis, no database, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``80G`` → 85899345920 bytes (K, M, G, T are powers of 1024; a bare number is bytes).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 24G or 80GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class HardwareClass:
    """A kind of worker: its name, GPUs and memory per GPU."""

    name: str
    gpus: int
    gpu_mem: int

    @property
    def queue(self) -> str:
        return f"train-{self.name}"

    def describe(self) -> str:
        if not self.gpus:
            return f"{self.name} (CPU)"
        plural = "s" if self.gpus > 1 else ""
        return f"{self.name} ({self.gpus} GPU{plural}, {self.gpu_mem / 2**30:.0f} GiB each)"


def parse_classes(entries: Sequence[str]) -> list[HardwareClass]:
    """``["cpu:0:0", "a10:1:24G"]`` → the classes, in the order given.

    Raises:
        ValueError: an entry is not ``name:gpus:gpu_mem``, or a name repeats.
    """
    found: list[HardwareClass] = []
    for entry in entries:
        parts = entry.strip().split(":")
        if len(parts) != 3 or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", parts[0]) or not parts[1].isdigit():
            raise ValueError(f"hardware class {entry!r} is not name:gpus:gpu_mem (e.g. a10:1:24G)")
        found.append(HardwareClass(parts[0], int(parts[1]), parse_size(parts[2])))
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise ValueError(f"hardware class names repeat: {', '.join(names)}")
    return found


def fits(hardware: HardwareClass, *, procs: int, memory_bytes: int | None) -> bool:
    """Whether a worker of ``hardware`` can run a job of ``procs`` processes needing ``memory_bytes``
    each (a CPU class runs any job, slowly; it has no memory bound here)."""
    if not hardware.gpus:
        return True
    return hardware.gpus >= procs and (memory_bytes is None or memory_bytes <= hardware.gpu_mem)


def route(classes: Sequence[HardwareClass], *, procs: int, memory_bytes: int | None) -> HardwareClass:
    """The smallest class (in the order configured) that can run the job: among the GPU classes when
    there are any (a deployment with GPUs does not train on CPU), else the first CPU class.

    Raises:
        ValueError: none can; the message says what the job needs and what the classes have.
    """
    gpu_classes = [c for c in classes if c.gpus]
    for hardware in gpu_classes or list(classes):
        if fits(hardware, procs=procs, memory_bytes=memory_bytes):
            return hardware
    need = f"{procs} GPU{'s' if procs > 1 else ''}"
    if memory_bytes is not None:
        need += f" with ~{memory_bytes / 2**30:.1f} GiB each"
    have = ", ".join(c.describe() for c in classes) or "none"
    raise ValueError(f"No worker class can run this job: it needs {need}; the classes are {have}.")


def served_queues(classes: Sequence[HardwareClass], *, gpus: int, gpu_mem: int) -> list[str]:
    """The train queues a worker with ``gpus`` GPUs of ``gpu_mem`` bytes serves: every class it can
    stand in for, its own first (the largest it matches)."""
    matching = [c for c in classes if c.gpus <= gpus and (c.gpus == 0 or c.gpu_mem <= gpu_mem)]
    if gpus == 0:
        matching = [c for c in matching if c.gpus == 0]
    return [c.queue for c in reversed(matching)]


def worker_class(classes: Sequence[HardwareClass], *, gpus: int, gpu_mem: int) -> str:
    """The class a worker with ``gpus`` GPUs of ``gpu_mem`` bytes counts as, for the throughput kept
    per class: the largest configured class it matches; without one, ``cpu`` or a description of its
    GPUs (``2gpu-80G``)."""
    served = served_queues(classes, gpus=gpus, gpu_mem=gpu_mem)
    if served:
        return served[0].removeprefix("train-")
    return "cpu" if not gpus else f"{gpus}gpu-{gpu_mem / 2**30:.0f}G"
