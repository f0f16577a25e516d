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
  reads and forwards to the database and Slack; through Redis, `RedisLink`, when the run spans
  several machines and rank 0 may be on any of them: `runner.jobs.multinode`), writes the
  checkpoint and the adapter, and leaves the outcome in ``outcome.json`` (or Redis); the job
  registers the version, and only after every process exited cleanly with that outcome, so a failed
  or killed process never leaves half a version.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.exceptions import FtbotError
from runner.core.trainconfig import Progress, TrainConfig, TrainingCancelled, TrainingPaused

PR_SET_PDEATHSIG = 1
POLL_S = 0.2
PAUSE, STOP = "pause", "stop"
HEAD_KEY = "head"  # a multi-node run's launching job refreshes it while it watches (RedisLink)


class DistributedTrainingFailed(FtbotError):
    """A training process failed or was killed; torchrun ended the group. Nothing was registered."""


def _die_with_parent() -> None:
    """Get SIGTERM when the process that started this one dies (Linux), however it dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


# --------------------------------------------------------------------------------------------------
# In the job: launch and watch
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendezvous:
    """Where the nodes of a multi-node run meet: torchrun's c10d rendezvous on the head node."""

    nodes: int
    endpoint: str
    """``host:port`` of the head node, which hosts the rendezvous store."""
    run_id: str
    """The same on every node of the run and unique to it (a new one for each try)."""
    is_host: bool
    """Whether this node hosts the store (the head)."""
    local_addr: str | None = None
    """This node's address as the others reach it (the master address when it gets rank 0)."""
    join_timeout: int = 600


def torchrun_command(procs: int, spec: Path, rendezvous: Rendezvous | None = None) -> list[str]:
    """The command line of a run with ``procs`` processes on this machine (``spec``: its settings),
    alone (``--standalone``) or as one node of a multi-node run (``rendezvous``)."""
    if rendezvous is None:
        where = ["--standalone"]
    else:
        where = [
            f"--nnodes={rendezvous.nodes}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={rendezvous.endpoint}",
            f"--rdzv_id={rendezvous.run_id}",
            f"--rdzv_conf=is_host={str(rendezvous.is_host).lower()},join_timeout={rendezvous.join_timeout}",
            *([f"--local_addr={rendezvous.local_addr}"] if rendezvous.local_addr else []),
        ]
    return [
        sys.executable,
        "-m",
        "runner.ml.distributed",
        "--torchrun",  # sets the parent-death signal, then becomes torchrun (see _exec_torchrun)
        *where,
        f"--nproc_per_node={procs}",
        "--max_restarts=0",
        "-m",
        "runner.ml.distributed",
        str(spec),
    ]


class FileLink:
    """The job's side of rank 0's link on one machine: files in the work folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.events = workdir / "events.jsonl"
        self.events.touch()
        self._reader = self.events.open()
        self._pending = ""

    def read(self) -> list[dict[str, Any]]:
        self._pending += self._reader.read()
        *lines, self._pending = self._pending.split("\n")  # a line being written waits for the next pass
        return [json.loads(line) for line in lines]

    def ask(self, what: str) -> None:
        staging = self.workdir / ".control"
        staging.write_text(what)
        os.replace(staging, self.workdir / "control")

    def outcome(self) -> dict[str, Any]:
        self._reader.close()
        outcome_file = self.workdir / "outcome.json"
        return json.loads(outcome_file.read_text()) if outcome_file.exists() else {}


class RedisLink:
    """The job's side of rank 0's link across machines: Redis keys under ``prefix`` (rank 0 may run
    on any node; each node reaches Redis)."""

    TTL_S = 7 * 24 * 3600

    def __init__(self, connection: Any, prefix: str) -> None:
        self.redis, self.prefix = connection, prefix
        self._seen = 0

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def clear(self) -> None:
        """Forget a previous try's events, control and outcome under the same prefix."""
        self.redis.delete(*(self.key(n) for n in ("events", "control", "outcome")))

    def read(self) -> list[dict[str, Any]]:
        items = self.redis.lrange(self.key("events"), self._seen, -1)
        self._seen += len(items)
        return [json.loads(item) for item in items]

    def ask(self, what: str) -> None:
        self.redis.set(self.key("control"), what, ex=self.TTL_S)

    def outcome(self) -> dict[str, Any]:
        found = self.redis.get(self.key("outcome"))
        return json.loads(found) if found else {}


def write_inputs(
    config: TrainConfig,
    train_examples: Sequence[Mapping[str, Any]],
    eval_examples: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    workdir: Path,
    checkpoint_dir: Path | None,
    link_prefix: str | None = None,
) -> Path:
    """Empty ``workdir`` (a previous try's events, outcome and control) and write the run's data and
    settings there; returns the settings file every process is started with.

    Args:
        link_prefix: rank 0 reports through Redis keys under it (a multi-node run) instead of files.
    """
    shutil.rmtree(workdir, ignore_errors=True)
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
                "link_prefix": link_prefix,
            }
        )
    )
    return spec


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start torchrun in a process group of its own (SIGTERM to it reaches every rank), its output
    in ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, said here to silence its warning
    with log.open("wb") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def watch(
    done: Callable[[], bool],
    link: FileLink | RedisLink,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_pause: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int, float | None], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Forward rank 0's events and pass on pause and stop requests until ``done()``; returns the
    outcome rank 0 left (empty when it left none).

    Args:
        tick: called on every pass (a multi-node head's liveness, its other nodes' state).
    """
    asked: str | None = None
    while True:
        finished = done()
        for event in link.read():
            _forward(event, progress, on_checkpoint)
        if finished:
            break
        if asked is None and should_pause is not None and should_pause():
            link.ask(asked := PAUSE)
        elif asked is None and should_stop is not None and should_stop():
            link.ask(asked := STOP)
        if tick is not None:
            tick()
        time.sleep(POLL_S)
    return link.outcome()


def conclude(outcome: Mapping[str, Any], *, exited_cleanly: bool, failure: Callable[[], str]) -> Any:
    """The run's end from rank 0's outcome: its result, or the exception that says how it ended.

    Args:
        exited_cleanly: whether every process of the run exited with status 0.
        failure: the failure's description (with a log's tail), asked only when it failed.

    Raises:
        TrainingPaused, TrainingCancelled, DistributedTrainingFailed: see :func:`launch`.
    """
    from runner.ml.loop import TrainResult

    kind = outcome.get("outcome")
    if kind == "finished" and exited_cleanly:
        data = dict(outcome["result"])
        data["out_dir"] = Path(data["out_dir"])
        for name in ("loss_curve", "eval_losses", "checkpoints"):
            data[name] = [tuple(item) for item in data[name]]
        return TrainResult(**data)
    if kind == "paused":
        raise TrainingPaused(int(outcome["step"]))
    if kind == "cancelled":
        raise TrainingCancelled(str(outcome["message"]))
    raise DistributedTrainingFailed(failure())


def log_tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


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

    if torch.cuda.is_available() and config.procs > torch.cuda.device_count():
        raise ValueError(f"procs={config.procs} but this worker has {torch.cuda.device_count()} GPUs")
    spec = write_inputs(
        config, train_examples, eval_examples, out_dir, workdir=workdir, checkpoint_dir=checkpoint_dir
    )
    log = workdir / "torchrun.log"
    link = FileLink(workdir)
    process = start(torchrun_command(config.procs, spec), log)
    if on_started is not None:
        on_started(process.pid)
    outcome = watch(
        lambda: process.poll() is not None,
        link,
        progress=progress,
        should_stop=should_stop,
        should_pause=should_pause,
        on_checkpoint=on_checkpoint,
    )
    return conclude(
        outcome,
        exited_cleanly=process.returncode == 0,
        failure=lambda: (
            f"torchrun exited with status {process.returncode} ({config.procs} processes); "
            f"log tail:\n{log_tail(log)}"
        ),
    )


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
    """Rank 0's link to the job: events out, pause and stop in, the outcome out. Files in the work
    folder on one machine; Redis keys (``link_prefix`` in the settings) when the job may be on
    another machine."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.prefix: str | None = spec.get("link_prefix")
        self.workdir = Path(spec["workdir"])
        if self.prefix:
            from redis import Redis

            from runner.core.config import load_settings

            self.redis = Redis.from_url(load_settings().redis_url)
        else:
            self.events = (self.workdir / "events.jsonl").open("a")

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.prefix:
            self.redis.rpush(f"{self.prefix}:events", json.dumps(event))
            return
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def asked(self, what: str) -> bool:
        if self.prefix:
            found = self.redis.get(f"{self.prefix}:control")
            if what == STOP and not self.redis.exists(f"{self.prefix}:{HEAD_KEY}"):
                return True  # the job that launched the run is gone: nobody would register it
            return found in (what, what.encode())  # bytes, unless the client decodes
        with contextlib.suppress(FileNotFoundError):
            return (self.workdir / "control").read_text().strip() == what
        return False

    def finish(self, outcome: Mapping[str, Any]) -> None:
        if self.prefix:
            self.redis.set(f"{self.prefix}:outcome", json.dumps(outcome), ex=RedisLink.TTL_S)
            return
        staging = self.workdir / ".outcome.json"
        staging.write_text(json.dumps(outcome))
        os.replace(staging, self.workdir / "outcome.json")


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
    link = _Rank0(spec) if rank == 0 else None
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
    if link is not None:
        link.finish(outcome)
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
