"""Runs on more than one machine: the RQ job launches the run on an existing engine and watches it.

A run with ``nodes > 1`` trains with ``nodes × procs`` processes. How it is launched is the
deployment's choice, ``FTBOT_MULTINODE``:

* ``torchrun``: fixed nodes (``FTBOT_NODES``, ``name=address``, the first is the head), each with a
  worker started as ``ftbot worker --node NAME`` (it serves the queue ``node-NAME``). The run's job
  goes to the head's queue; there it writes the run's data and settings to the run's work folder
  (on storage every node mounts at the same path: ``FTBOT_DATA_DIR``), puts a node job on each
  other node's queue, and starts its own group: ``torchrun --nnodes N --rdzv-backend c10d
  --rdzv-endpoint head:FTBOT_RDZV_PORT --rdzv-id <run, try>``. Each node job starts the same command
  on its machine; torchrun's c10d rendezvous makes one world of them.
* ``k8s``: a Kubeflow Trainer ``TrainJob`` (`runner.jobs.trainjob`), created through the Kubernetes
  API and watched until it completes or fails.

Either way rank 0 — on whichever node it lands — reports through Redis (`RedisLink`): its progress
and checkpoints go to the run's status message as on one machine, pause and stop reach it the same
way, and it leaves the outcome there. The job registers the version only when rank 0 finished and
every node's group exited cleanly, so a failed or lost node never leaves half a version.

Cancel kills the head's job (RQ); its torchrun gets SIGTERM, and the ``on_stopped`` callback
(`abort`) tells the other nodes (their node jobs send SIGTERM to their groups) or deletes the
TrainJob. A job that dies without a word stops refreshing its liveness key; rank 0 then stops the
run at the next step (with a checkpoint) and the node jobs end their groups. A node lost while
training (its machine gone, its node job silent) fails the run with the node named.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Worker

from runner.core.config import Settings, load_settings
from runner.core.trainconfig import Progress, TrainConfig
from runner.jobs.queues import BACKSTOP_S, fetch_job, queue

log = logging.getLogger(__name__)

NODE_QUEUE_PREFIX = "node-"
HEAD_TTL_S = 30  # the head's liveness key lives this long unless refreshed
BEAT_EVERY_S = 5.0
NODE_EXIT_WAIT_S = 60.0  # after the head's group ended, how long the other nodes get to report


@dataclass(frozen=True)
class Node:
    name: str
    address: str


def parse_nodes(entries: Sequence[str]) -> list[Node]:
    """``["a=10.0.0.1", "b=10.0.0.2"]`` → the nodes, the head first.

    Raises:
        ValueError: an entry is not ``name=address``, or a name repeats.
    """
    nodes = []
    for entry in entries:
        name, _, address = entry.partition("=")
        if not name.strip() or not address.strip():
            raise ValueError(f"FTBOT_NODES entry {entry!r} is not name=address (e.g. a=10.0.0.1)")
        nodes.append(Node(name.strip(), address.strip()))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"FTBOT_NODES names repeat: {', '.join(names)}")
    return nodes


def node_queue(name: str) -> str:
    """The queue ``ftbot worker --node NAME`` serves."""
    return NODE_QUEUE_PREFIX + name


def refusal(settings: Settings, config: TrainConfig) -> str | None:
    """Why this deployment cannot run ``config`` (None: it can, or it is a one-machine run)."""
    if config.nodes == 1:
        return None
    if not settings.ftbot_multinode:
        return (
            f"nodes={config.nodes} needs a multi-node launcher: set FTBOT_MULTINODE to torchrun "
            "(fixed nodes, FTBOT_NODES) or k8s (a Kubeflow Trainer TrainJob)."
        )
    if settings.ftbot_multinode == "torchrun":
        try:
            nodes = parse_nodes(settings.ftbot_nodes)
        except ValueError as exc:
            return str(exc)
        if len(nodes) < config.nodes:
            return f"nodes={config.nodes} but FTBOT_NODES lists {len(nodes)} node(s)."
    return None


def train_queue(settings: Settings, default: str) -> str:
    """The queue of a multi-node run's job: the head node's (torchrun), else ``default``."""
    if settings.ftbot_multinode == "torchrun":
        return node_queue(parse_nodes(settings.ftbot_nodes)[0].name)
    return default


def link_prefix(run_id: int, attempt: int) -> str:
    """The Redis keys of one try of a run: rank 0's events, control and outcome, the head's
    liveness, the other nodes' liveness and exit statuses."""
    return f"ftbot:launch:{run_id}:{attempt}"


def trainjob_name(run_id: int, attempt: int) -> str:
    return f"ftbot-run-{run_id}-{attempt}"


def launch(
    settings: Settings,
    connection: Redis,
    *,
    run_id: int,
    attempt: int,
    config: TrainConfig,
    train_examples: Sequence[Mapping[str, Any]],
    eval_examples: Sequence[Mapping[str, Any]],
    out_dir: Path,
    workdir: Path,
    checkpoint_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    should_pause: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[int, float | None], None] | None = None,
) -> Any:
    """Train ``config`` on ``config.nodes`` machines and wait for it (in the head's job).

    Returns:
        The :class:`runner.ml.loop.TrainResult` rank 0 left.

    Raises:
        TrainingPaused, TrainingCancelled: as for one machine.
        DistributedTrainingFailed: a node failed, was lost or never joined (the message says which).
    """
    from runner.ml import distributed

    problem = refusal(settings, config)
    if problem:
        raise distributed.DistributedTrainingFailed(problem)
    prefix = link_prefix(run_id, attempt)
    link = distributed.RedisLink(connection, prefix)
    link.clear()
    connection.delete(key(prefix, "abort"))
    spec = distributed.write_inputs(
        config,
        train_examples,
        eval_examples,
        out_dir,
        workdir=workdir,
        checkpoint_dir=checkpoint_dir,
        link_prefix=prefix,
    )
    beat = _HeadBeat(connection, prefix)
    hooks: dict[str, Any] = {
        "progress": progress,
        "should_stop": should_stop,
        "should_pause": should_pause,
        "on_checkpoint": on_checkpoint,
    }
    try:
        if settings.ftbot_multinode == "k8s":
            from runner.jobs import trainjob

            return trainjob.launch(
                settings, link, beat, run_id=run_id, attempt=attempt, config=config, spec=spec, **hooks
            )
        return _launch_on_nodes(settings, connection, link, beat, run_id, attempt, config, spec, hooks)
    finally:
        beat.stop()  # whatever is still running of the run stops at its next step


def key(prefix: str, name: str) -> str:
    return f"{prefix}:{name}"


class _HeadBeat:
    """The head's liveness key: refreshed while the job watches, deleted when it stops watching."""

    def __init__(self, connection: Redis, prefix: str) -> None:
        from runner.ml.distributed import HEAD_KEY

        self.redis, self.key = connection, key(prefix, HEAD_KEY)
        self._last = 0.0
        self()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= BEAT_EVERY_S:
            self.redis.set(self.key, "1", ex=HEAD_TTL_S)
            self._last = now

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.delete(self.key)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _launch_on_nodes(
    settings: Settings,
    connection: Redis,
    link: Any,
    beat: _HeadBeat,
    run_id: int,
    attempt: int,
    config: TrainConfig,
    spec: Path,
    hooks: dict[str, Any],
) -> Any:
    from runner.ml import distributed

    nodes = parse_nodes(settings.ftbot_nodes)[: config.nodes]
    head, others = nodes[0], nodes[1:]
    absent = [n.name for n in others if not Worker.all(queue=queue(node_queue(n.name), connection))]
    if absent:
        raise distributed.DistributedTrainingFailed(
            f"No worker serves node {', '.join(absent)}: start `ftbot worker --node NAME` there "
            f"(queue {', '.join(node_queue(a) for a in absent)})."
        )
    port = settings.ftbot_rdzv_port or _free_port()
    rdzv_id = f"ftbot-{run_id}-{attempt}-{uuid.uuid4().hex[:8]}"  # a retried job gets a fresh rendezvous

    def rendezvous(node: Node) -> distributed.Rendezvous:
        return distributed.Rendezvous(
            nodes=config.nodes,
            endpoint=f"{head.address}:{port}",
            run_id=rdzv_id,
            is_host=node == head,
            local_addr=node.address,
            join_timeout=settings.ftbot_rdzv_timeout,
        )

    prefix = link.prefix
    for node in others:
        connection.delete(key(prefix, f"exit:{node.name}"), key(prefix, f"alive:{node.name}"))
        queue(node_queue(node.name), connection).enqueue(
            "runner.jobs.multinode.node_job",
            run_id,
            attempt,
            node.name,
            str(spec),
            config.procs,
            asdict(rendezvous(node)),
            job_id=node_job_id(run_id, attempt, node.name),
            job_timeout=settings.ftbot_job_timeout + BACKSTOP_S,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            meta={"multinode_run": run_id, "node": node.name},
            description=f"node {node.name} of run {run_id}" + (f" (resume {attempt})" if attempt else ""),
        )
    log_file = spec.parent / f"torchrun-{head.name}.log"
    process = distributed.start(distributed.torchrun_command(config.procs, spec, rendezvous(head)), log_file)
    lost: list[str] = []

    def tick() -> None:
        beat()
        for node in others:
            if node.name in lost or connection.exists(key(prefix, f"exit:{node.name}")):
                continue
            seen = connection.get(key(prefix, f"seen:{node.name}"))
            if seen and not connection.exists(key(prefix, f"alive:{node.name}")):
                lost.append(node.name)  # its node job stopped reporting: the machine or worker is gone
                log.warning("node %s of run %s was lost", node.name, run_id)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)

    try:
        outcome = distributed.watch(lambda: process.poll() is not None, link, tick=tick, **hooks)
        exits = _wait_for_nodes(connection, prefix, [n.name for n in others], beat, lost)
    except BaseException:
        abort_nodes(connection, run_id, attempt)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        raise
    clean = process.returncode == 0 and all(code == 0 for code in exits.values())
    if not clean:
        abort_nodes(connection, run_id, attempt)
    if lost:  # the others stopped when it was lost; the run failed, whatever rank 0 recorded
        raise distributed.DistributedTrainingFailed(
            f"Node {', '.join(lost)} was lost (its node job stopped reporting); the run stopped on "
            f"the other nodes. Log tail of {head.name}:\n{distributed.log_tail(log_file, 1200)}"
        )

    def failure() -> str:
        said = [f"{head.name}: exit status {process.returncode}"]
        said += [
            f"{name}: " + ("lost" if code is None else f"exit status {code}") for name, code in exits.items()
        ]
        return (
            f"The multi-node run failed ({config.nodes} nodes × {config.procs} processes; "
            + "; ".join(said)
            + f"). Log tail of {head.name}:\n{distributed.log_tail(log_file, 1200)}"
        )

    if not clean and outcome.get("outcome") == "cancelled":
        # A node's group got SIGTERM from outside (its worker stopped): the others stopped with it,
        # at one step with a checkpoint, but nobody asked this run to stop: it failed.
        raise distributed.DistributedTrainingFailed(failure())
    return distributed.conclude(outcome, exited_cleanly=clean, failure=failure)


def _wait_for_nodes(
    connection: Redis, prefix: str, names: list[str], beat: _HeadBeat, lost: list[str]
) -> dict[str, int | None]:
    """Each other node's exit status (None: lost, or it did not report in time)."""
    deadline = time.monotonic() + NODE_EXIT_WAIT_S
    exits: dict[str, int | None] = {}
    while True:
        for name in names:
            if name in exits:
                continue
            found = connection.get(key(prefix, f"exit:{name}"))
            if found is not None:
                exits[name] = int(found)
            elif name in lost or (
                connection.exists(key(prefix, f"seen:{name}"))
                and not connection.exists(key(prefix, f"alive:{name}"))
            ):
                exits[name] = None  # its node job stopped reporting
        if len(exits) == len(names) or time.monotonic() > deadline:
            return {name: exits.get(name) for name in names}
        beat()
        time.sleep(0.2)


def node_job_id(run_id: int, attempt: int, node: str) -> str:
    return f"ftbot-node-{run_id}-{attempt}-{node}"


def abort_nodes(connection: Redis, run_id: int, attempt: int) -> None:
    """Tell the other nodes of a run's try to end their groups now, and take their node jobs off
    the queues when they have not started."""
    prefix = link_prefix(run_id, attempt)
    connection.set(key(prefix, "abort"), "1", ex=24 * 3600)
    settings = load_settings()
    with contextlib.suppress(ValueError):
        for node in parse_nodes(settings.ftbot_nodes):
            job = fetch_job(connection, node_job_id(run_id, attempt, node.name))
            if job is not None and job.get_status(refresh=True) in ("queued", "deferred", "scheduled"):
                with contextlib.suppress(Exception):
                    job.cancel()


def abort(connection: Redis, run_id: int, attempt: int, nodes: int) -> None:
    """A multi-node run's job was stopped (Cancel): end what runs of it elsewhere."""
    if nodes <= 1:
        return
    settings = load_settings()
    abort_nodes(connection, run_id, attempt)
    if settings.ftbot_multinode == "k8s":
        from runner.jobs import trainjob

        try:
            trainjob.KubernetesApi.from_settings(settings).delete(trainjob_name(run_id, attempt))
        except trainjob.KubernetesError:
            log.exception("could not delete the TrainJob of run %s", run_id)


def node_job(
    run_id: int, attempt: int, node: str, spec: str, procs: int, rendezvous: dict[str, Any]
) -> dict[str, Any]:
    """One other node's part of a multi-node run (an RQ job on ``node-NAME``): start this machine's
    group with the head's rendezvous, keep the head informed, end it when the run is aborted or the
    head is gone. Returns the group's exit status."""
    from runner.ml import distributed

    settings = load_settings()
    connection = Redis.from_url(settings.redis_url)
    prefix = link_prefix(run_id, attempt)
    head = key(prefix, distributed.HEAD_KEY)
    if connection.exists(key(prefix, "abort")) or not connection.exists(head):
        return {"run_id": run_id, "node": node, "skipped": "the run's job is gone"}
    alive = key(prefix, f"alive:{node}")
    connection.set(alive, "1", ex=HEAD_TTL_S)
    connection.set(key(prefix, f"seen:{node}"), "1", ex=7 * 24 * 3600)
    spec_path = Path(spec)
    log_file = spec_path.parent / f"torchrun-{node}.log"
    process = distributed.start(
        distributed.torchrun_command(procs, spec_path, distributed.Rendezvous(**rendezvous)), log_file
    )
    last_beat, ending = time.monotonic(), False
    while process.poll() is None:
        if time.monotonic() - last_beat >= BEAT_EVERY_S:
            connection.set(alive, "1", ex=HEAD_TTL_S)
            last_beat = time.monotonic()
        if not ending and (connection.exists(key(prefix, "abort")) or not connection.exists(head)):
            ending = True  # every rank stops at the next step boundary (see runner.ml.distributed)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        time.sleep(distributed.POLL_S)
    connection.set(key(prefix, f"exit:{node}"), str(process.returncode), ex=7 * 24 * 3600)
    connection.delete(alive)
    return {"run_id": run_id, "node": node, "returncode": process.returncode}
