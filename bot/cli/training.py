"""`ftbot worker`, `train`, `runs`: training jobs from the terminal."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from redis import Redis
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli.common import database, echo_json, engine, ids, migrated, operator, settings
from runner.core import models
from runner.core.db import session_scope, upgrade
from runner.core.models import TERMINAL_RUN_STATUSES, TrainingRun
from runner.data import projects
from runner.jobs import hardware, multinode, queues, runs, tasks
from runner.jobs.worker import run_worker, serve_metrics
from runner.registry import versions
from runner.slack import payloads


@click.command()
@click.option(
    "--queues", "queue_names", default=None, help="Comma-separated queues (default FTBOT_QUEUES: train,eval)."
)
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's host.pid).")
@click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port.")
@click.option("--gpus", default=None, type=int, help="GPUs this worker has (with FTBOT_HARDWARE_CLASSES).")
@click.option("--gpu-mem", default="0", help="Memory of each GPU, e.g. 80G (with --gpus).")
@click.option(
    "--node",
    default=None,
    help="This machine's name in FTBOT_NODES: also serve its node queue (multi-node runs, torchrun).",
)
def worker(
    queue_names: str | None,
    burst: bool,
    name: str | None,
    metrics_port: int | None,
    gpus: int | None,
    gpu_mem: str,
    node: str | None,
) -> None:
    """Run an RQ worker for training and evaluation jobs (many may share one Redis).

    With FTBOT_HARDWARE_CLASSES and --gpus, it serves the train queue of every class it can stand in
    for, then eval (unless --queues says otherwise). With --node NAME it serves NAME's node queue
    first: the multi-node runs it heads, and its part of the others'.
    """
    config = settings()
    upgrade(engine(config))
    if metrics_port is not None:
        serve_metrics(config, metrics_port)
    chosen = tuple(ids(queue_names)) if queue_names else config.ftbot_queues
    declared = None
    if gpus is not None:
        try:
            classes = hardware.parse_classes(config.ftbot_hardware_classes)
            memory = hardware.parse_size(gpu_mem)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        served = hardware.served_queues(classes, gpus=gpus, gpu_mem=memory)
        declared = hardware.worker_class(classes, gpus=gpus, gpu_mem=memory)
        if classes and not queue_names:
            if not served:
                raise click.UsageError(f"no hardware class fits {gpus} GPUs of {gpu_mem}")
            chosen = (*served, queues.EVAL_QUEUE)
            click.echo(f"serving {', '.join(chosen)}")
        click.echo(f"hardware class {declared}")
    if node is not None:
        try:
            known = [n.name for n in multinode.parse_nodes(config.ftbot_nodes)]
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        if node not in known:
            raise click.UsageError(f"--node {node}: FTBOT_NODES names {', '.join(known) or 'no node'}")
        mine = multinode.node_queue(node)
        chosen = (mine, *(q for q in chosen if q != mine))
    run_worker(config, queues=chosen, burst=burst, name=name, hardware_class=declared)


def _follow(run_id: int) -> str:
    """Show a run's progress until it ends; returns its final status."""
    db_engine = engine()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(f"run {run_id}", total=None, detail="queued")
        while True:
            with session_scope(db_engine) as session:
                run = session.get(TrainingRun, run_id)
                assert run is not None
                progress, status = run.progress, run.status
            if progress:
                bar.update(
                    task,
                    total=progress["total_steps"],
                    completed=progress["step"],
                    detail=f"{status} · loss {progress['loss']} · {progress['tokens_per_s']} tok/s",
                )
            else:
                bar.update(task, detail=status)
            if status in TERMINAL_RUN_STATUSES:
                return status
            time.sleep(1.0)  # polling a local database once a second for a terminal display


def _print_run(run: Any, version: int | None = None) -> None:
    line = f"run {run.id}: {run.status}"
    if version is not None:
        line += f" → v{version} (candidate)"
    if run.error:
        line += f"\n  why: {run.error}"
    if run.advice:
        line += f"\n  next: {run.advice}"
    click.echo(line)


ESTIMATE_ROWS = (
    ("examples", "examples"),
    ("tokens", "tokens"),
    ("time", "time"),
    ("gpu_hours", "GPU-hours"),
    ("memory", "memory"),
    ("hardware", "hardware"),
    ("throughput", "throughput"),
)


def _print_estimate(project_name: str, request: models.TrainingRequest) -> None:
    fields = payloads.estimate_fields(request.estimate, request.config)
    click.echo(f"{project_name}: the run's estimate (request {request.id})")
    fields["tokens"] += f" ({fields['epochs']})" if fields["epochs"] else ""
    for key, label in ESTIMATE_ROWS:
        click.echo(f"  {label:<11} {fields[key].replace('`', '')}")
    if request.budget:
        click.echo(f"  {'budget':<11} {payloads.budget_line(request.budget)}")


@click.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("options", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--wait", is_flag=True, help="Follow the job to the end with a progress bar.")
@click.option("--inline", is_flag=True, help="Train in this process, without Redis or a worker.")
@click.option("--ignore-gates", is_flag=True, help="Train even when the dataset's readiness gates fail.")
@click.option(
    "--yes",
    "-y",
    "yes",
    is_flag=True,
    help="Queue without asking (scripts); the estimate is still shown.",
)
def train(
    project_name: str, options: tuple[str, ...], wait: bool, inline: bool, ignore_gates: bool, yes: bool
) -> None:
    """Snapshot PROJECT, show the run's estimate and, once confirmed (or with --yes), train a LoRA
    adapter on it (options: base_model, epochs, lr, lora_r, …). Over FTBOT_BUDGET_GPU_HOURS,
    confirming here approves it (an operator at the command line may)."""
    config = settings()
    person = operator()
    with migrated() as db_engine:
        request = runs.propose_training(
            db_engine,
            config,
            person,
            project_name=project_name,
            overrides=runs.parse_overrides(list(options)),
            require_gates=not ignore_gates,
        )
        assert request.id is not None
        _print_estimate(project_name, request)
        over = bool((request.budget or {}).get("over"))
        if over:
            click.echo(f"  over the budget: confirming approves it as {person.user_id}")
        try:
            confirmed = yes or click.confirm("Queue this run?", default=False)
        except click.Abort:  # no answer (stdin closed): a script that did not say --yes
            confirmed = False
        if not confirmed:
            runs.cancel_request(db_engine, config, person, request.id)
            raise click.ClickException("Nothing was queued (pass --yes to queue without being asked).")
        run = runs.confirm_training(
            db_engine,
            config,
            person,
            request.id,
            connection=None if inline else Redis.from_url(config.redis_url),
            approve=over,
        )
        run_id = run.id
    assert run_id is not None
    if inline:
        click.echo(f"run {run_id}: training in this process")
        try:
            tasks.train_job(run_id)
        except Exception as exc:
            tasks.mark_ended(
                run_id, models.RunStatus.FAILED, f"{type(exc).__name__}: {exc}", tasks.advice_for(exc)
            )
    elif wait:
        click.echo(f"run {run_id} queued (job {queues.train_job_id(run_id)})")
        _follow(run_id)
    else:
        click.echo(
            f"run {run_id} queued (job {queues.train_job_id(run_id)}); "
            f"follow it with `ftbot runs {project_name}`"
        )
        return
    with database() as session:
        found = projects.get_project(session, project_name)
        done = session.get(TrainingRun, run_id)
        assert done is not None
        version = next((v.number for v in versions.versions(session, found) if v.id == done.version_id), None)
        _print_run(done, version)
        if done.status != "finished":
            sys.exit(1)


@click.command("runs")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_cmd(project_name: str, as_json: bool) -> None:
    """PROJECT's training runs, newest first, with status and metrics."""
    with database() as session:
        found = projects.get_project(session, project_name)
        numbers = {v.id: v.number for v in versions.versions(session, found)}
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "status": r.status,
                "snapshot": r.snapshot_id,
                "version": numbers.get(r.version_id),
                "requested_by": r.requested_by,
                "created_at": str(r.created_at),
                "progress": r.progress,
                "metrics": r.metrics,
                "estimate": r.estimate,
                "actual": runs.actual(r),
                "actual_vs_estimate": runs.actual_vs_estimate(r),
                "hardware_class": r.hardware_class,
                "approved_by": r.approved_by,
                "error": r.error,
                "advice": r.advice,
            }
            for r in runs.runs(session, found)
        ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        metrics = row["metrics"] or {}
        detail = (
            f"v{row['version']} · loss {metrics.get('final_train_loss', float('nan')):.4f} · "
            f"{metrics.get('tokens_per_s', 0):.0f} tok/s"
            if row["status"] == "finished"
            else (row["error"] or "")
        )
        estimate, ratios = row["estimate"] or {}, row["actual_vs_estimate"]
        if estimate:
            detail += f" · estimated {payloads.duration(estimate.get('seconds'))}"
            if "seconds" in ratios:
                detail += f", took {payloads.duration(row['actual']['seconds'])} ({ratios['seconds']:.2f}×)"
        click.echo(f"run {row['id']:>4}  {row['status']:<9}  {row['created_at'][:19]}  {detail}")


COMMANDS = [worker, train, runs_cmd]
