"""Multi-process training on one machine: the job launches ``torchrun``, each process trains a share.

``procs > 1`` (one process per GPU; gloo processes on CPU): the RQ job (:func:`launch`, in the
work-horse) writes the run's data and settings to a work folder and starts
``torchrun --standalone --nproc_per_node=procs -m runner.ml.distributed`` in a process group of its
own. Each process (:func:`main`) loads the 4-bit base on its device (``device_map={"": LOCAL_RANK}``),
wraps the LoRA model in DDP (``gloo`` on CPU, ``nccl`` on GPU) and runs :func:`runner.ml.loop.train`
with its rank: a step's micro-batches are dealt among the processes, so the global batch, the
schedule and the loss are those of one process with ``grad_accum_steps × procs`` micro-batches.

Who does what:

* rank 0 alone reports progress and checkpoints (as JSON lines in ``events.jsonl`` that the job
  reads and forwards to the database and Slack), writes the checkpoint and the adapter, and leaves
  the outcome in ``outcome.json``; the job registers the version, and only after every process exited
  cleanly with that outcome, so a failed or killed process never leaves half a version.
* a pause or a stop asked of the run reaches rank 0 through ``control`` (written by the job); SIGTERM
  (cancel: the job's process dies, and the kernel sends SIGTERM to torchrun, which passes it on to
  the processes; or SIGTERM sent to the whole group) sets a flag in the process that got it. Before
  every step the processes agree (an all-reduce of the flags) and all stop at the same step
  boundary; rank 0 checkpoints first. torchrun gives its processes 30 s to exit after SIGTERM before
  it kills them, far longer than a LoRA checkpoint takes to write.
* a process that dies (SIGKILL, out of memory) makes its peers' next collective fail; torchrun ends
  the group and exits non-zero, and the job fails the run with the log's tail.

When the 4-bit base does not fit one device, DDP is not enough: FSDP-QLoRA shards the base across
the GPUs, which needs the 4-bit weights stored in the compute dtype (``bnb_4bit_quant_storage`` =
``bfloat16``) so FSDP can flatten them with the LoRA weights. That path is documented in the README
(multi-GPU section), not built here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.core.exceptions import FtbotError
from runner.core.trainconfig import Progress, TrainConfig, TrainingCancelled, TrainingPaused

PR_SET_PDEATHSIG = 1
POLL_S = 0.2
PAUSE, STOP = "pause", "stop"


class DistributedTrainingFailed(FtbotError):
    """A training process failed or was killed; torchrun ended the group. Nothing was registered."""


def _die_with_parent() -> None:
    """Get SIGTERM when the process that started this one dies (Linux), however it dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# --------------------------------------------------------------------------------------------------
# In the job: launch and watch
# --------------------------------------------------------------------------------------------------


def torchrun_command(procs: int, spec: Path) -> list[str]:
    """The command line of a run with ``procs`` processes on this machine (``spec``: its settings)."""
    return [
        sys.executable,
        "-m",
        "runner.ml.distributed",
        "--torchrun",  # sets the parent-death signal, then becomes torchrun (see _exec_torchrun)
        "--standalone",
        f"--nproc_per_node={procs}",
        "--max_restarts=0",
        "-m",
        "runner.ml.distributed",
        str(spec),
    ]


def launch(
    config: TrainConfig,
    train_examples: Sequence[Mapping[str, Any]],
    eval_examples: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    workdir: Path,
    checkpoint_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_pause: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int, float | None], None] | None = None,
    on_started: Callable[[int], None] | None = None,
) -> Any:
    """Train with ``config.procs`` processes under torchrun and wait for them (the job's side).

    Args:
        config, train_examples, eval_examples, out_dir, checkpoint_dir, progress, should_stop,
            should_pause, on_checkpoint: as for :func:`runner.ml.loop.train`.
        workdir: A folder for the run's data, settings, events and log (emptied first; left for the
            caller to remove).
        on_started: Called with torchrun's process id (also its process group's).

    Returns:
        The :class:`runner.ml.loop.TrainResult` rank 0 wrote.

    Raises:
        TrainingPaused: the run was paused (the checkpoint is written).
        TrainingCancelled: ``should_stop()`` asked it, or the processes got SIGTERM.
        DistributedTrainingFailed: a process failed or was killed (the log's tail says how).
    """
    import torch

    from runner.ml.loop import TrainResult

    if torch.cuda.is_available() and config.procs > torch.cuda.device_count():
        raise ValueError(f"procs={config.procs} but this worker has {torch.cuda.device_count()} GPUs")
    shutil.rmtree(workdir, ignore_errors=True)  # a previous try's events, outcome and control
    workdir.mkdir(parents=True)
    (workdir / "data.json").write_text(
        json.dumps({"train": list(train_examples), "eval": list(eval_examples)})
    )
    spec = workdir / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "config": config.to_dict(),
                "out_dir": str(out_dir),
                "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir is not None else None,
                "workdir": str(workdir),
            }
        )
    )
    events, log = workdir / "events.jsonl", workdir / "torchrun.log"
    events.touch()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, said here to silence its warning
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            torchrun_command(config.procs, spec),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a process group of its own: SIGTERM to it reaches every rank
        )
    if on_started is not None:
        on_started(process.pid)
    asked: str | None = None
    pending = ""
    with events.open() as reader:
        while True:
            finished = process.poll() is not None
            pending += reader.read()
            *lines, pending = pending.split("\n")  # a line still being written waits for the next pass
            for line in lines:
                _forward(json.loads(line), progress, on_checkpoint)
            if finished:
                break
            if asked is None and should_pause is not None and should_pause():
                asked = _ask(workdir, PAUSE)
            elif asked is None and should_stop is not None and should_stop():
                asked = _ask(workdir, STOP)
            time.sleep(POLL_S)
    outcome_file = workdir / "outcome.json"
    outcome = json.loads(outcome_file.read_text()) if outcome_file.exists() else {}
    kind = outcome.get("outcome")
    if kind == "finished" and process.returncode == 0:
        data = dict(outcome["result"])
        data["out_dir"] = Path(data["out_dir"])
        for name in ("loss_curve", "eval_losses", "checkpoints"):
            data[name] = [tuple(item) for item in data[name]]
        return TrainResult(**data)
    if kind == "paused":
        raise TrainingPaused(int(outcome["step"]))
    if kind == "cancelled":
        raise TrainingCancelled(str(outcome["message"]))
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise DistributedTrainingFailed(
        f"torchrun exited with status {process.returncode} ({config.procs} processes); log tail:\n{tail}"
    )


def _ask(workdir: Path, what: str) -> str:
    staging = workdir / ".control"
    staging.write_text(what)
    os.replace(staging, workdir / "control")
    return what


def _forward(
    event: Mapping[str, Any],
    progress: Callable[[Progress], None] | None,
    on_checkpoint: Callable[[int, float | None], None] | None,
) -> None:
    if "progress" in event and progress is not None:
        progress(Progress(**event["progress"]))
    elif "checkpoint" in event and on_checkpoint is not None:
        step, loss = event["checkpoint"]
        on_checkpoint(int(step), loss)


# --------------------------------------------------------------------------------------------------
# In each process: train a share
# --------------------------------------------------------------------------------------------------


class _Rank0:
    """Rank 0's link to the job: events out, pause and stop in."""

    def __init__(self, workdir: Path) -> None:
        self.events = (workdir / "events.jsonl").open("a")
        self.control = workdir / "control"

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def asked(self, what: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return self.control.read_text().strip() == what
        return False


def main(spec_path: str) -> int:
    """One training process under torchrun (``python -m runner.ml.distributed SPEC``)."""
    import torch
    import torch.distributed as dist

    from runner.ml.loop import Distributed, train

    _die_with_parent()  # torchrun killed outright: do not train on alone
    terminating = False

    def on_sigterm(*_args: object) -> None:
        nonlocal terminating
        terminating = True

    signal.signal(signal.SIGTERM, on_sigterm)
    spec = json.loads(Path(spec_path).read_text())
    workdir = Path(spec["workdir"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    (workdir / f"rank-{rank}.pid").write_text(str(os.getpid()))
    data = json.loads((workdir / "data.json").read_text())
    link = _Rank0(workdir) if rank == 0 else None
    outcome: dict[str, Any]
    try:
        result = train(
            TrainConfig(**spec["config"]),
            data["train"],
            data["eval"],
            Path(spec["out_dir"]),
            checkpoint_dir=Path(spec["checkpoint_dir"]) if spec["checkpoint_dir"] else None,
            progress=(lambda p: link.emit({"progress": vars(p)})) if link else None,
            should_stop=(lambda: link.asked(STOP)) if link else None,
            should_pause=(lambda: link.asked(PAUSE)) if link else None,
            on_checkpoint=(lambda step, loss: link.emit({"checkpoint": [step, loss]})) if link else None,
            distributed=Distributed(rank, world, local_rank, terminating=lambda: terminating),
        )
        outcome = {"outcome": "finished", "result": result.to_dict()}
    except TrainingPaused as exc:
        outcome = {"outcome": "paused", "step": exc.step}
    except TrainingCancelled as exc:
        outcome = {"outcome": "cancelled", "message": str(exc)}
    if rank == 0:
        staging = workdir / ".outcome.json"
        staging.write_text(json.dumps(outcome))
        os.replace(staging, workdir / "outcome.json")
    dist.destroy_process_group()
    return 0


def _exec_torchrun(args: list[str]) -> None:
    """Become torchrun with the parent-death signal set (it survives exec): when the job's process
    dies, even by SIGKILL, torchrun gets SIGTERM and ends its processes."""
    _die_with_parent()
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *args])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--torchrun"]:
        _exec_torchrun(sys.argv[2:])
    sys.exit(main(sys.argv[1]))
