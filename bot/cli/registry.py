"""`ftbot versions`, `eval`, `promote`, `rollback`: the model registry from the terminal."""

from __future__ import annotations

import sys
from typing import Any

import click
from redis import Redis

from bot.cli.common import database, echo_json, engine, migrated, operator, settings, version_number
from runner.core.exceptions import RolledBackVersion
from runner.data import projects
from runner.jobs import queues
from runner.jobs.reconcile import reconcile_deploys, reconcile_once
from runner.jobs.tasks import evaluate_and_report
from runner.registry import abtests, versions


@click.command("versions")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def versions_cmd(project_name: str, as_json: bool) -> None:
    """PROJECT's model versions: status, lineage (snapshot, base model, config, the training step the
    adapter came from, each checkpoint's eval loss), eval metrics and closed blind A/B results."""
    with database() as session:
        found = projects.get_project(session, project_name)
        rows: list[dict[str, Any]] = [
            {
                "version": v.number,
                "status": versions.status_of(session, v),
                "snapshot": v.snapshot_id,
                "base_model": v.base_model,
                "run_id": v.run_id,
                "artifact_path": v.artifact_path,
                "created_at": str(v.created_at),
                "config": v.config,
                "step": (v.metrics or {}).get("best_step"),
                "steps": (v.metrics or {}).get("steps"),
                "checkpoints": (v.metrics or {}).get("checkpoints", []),
                "train_metrics": (v.metrics or {}),
                "eval": v.evaluation,
                "ab": abtests.version_lines(session, v),
            }
            for v in versions.versions(session, found)
        ]
        numbers = {v.id: v.number for v in versions.versions(session, found)}
        deployments = [
            {
                "action": d.action,
                "version": numbers.get(d.version_id),
                "previous": numbers.get(d.previous_version_id),
                "version_id": d.version_id,
                "state": d.state,
                "by": d.by,
                "reason": d.reason,
                "detail": d.detail,
                "at": str(d.at),
            }
            for d in versions.history(session, found, attempts=True)
        ]
    if as_json:
        echo_json({"project": project_name, "versions": rows, "deployments": deployments})
        return
    for row in rows:
        headline = ((row["eval"] or {}).get("candidate") or {}).get("headline")
        detail = f" · eval {headline:.3f}" if isinstance(headline, int | float) else ""
        step = f" · step {row['step']} of {row['steps']}" if row["step"] is not None else ""
        click.echo(
            f"v{row['version']:<3} {row['status']:<10} snapshot {row['snapshot'][:12]} · "
            f"{row['base_model']}{step}{detail}"
        )
        for line in row["ab"]:
            click.echo(f"     {line}")


@click.command("eval")
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="vN")
@click.option("--inline", is_flag=True, help="Evaluate in this process instead of on the eval queue.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (with --inline).")
def eval_cmd(project_name: str, version: str, inline: bool, as_json: bool) -> None:
    """Evaluate vN of PROJECT on its held-out split against the base model and production."""
    config = settings()
    with database() as session:
        found = projects.get_project(session, project_name)
        version_id = versions.get_version(session, found, version_number(version)).id
    assert version_id is not None
    if not inline:
        connection = Redis.from_url(config.redis_url)
        job = queues.enqueue_evaluation(version_id, settings=config, connection=connection)
        click.echo(f"evaluation of {project_name} {version} queued (job {job.id})")
        return
    result = evaluate_and_report(config, engine(config), version_id)
    with database() as session:
        report = versions.get_version(session, found, version_number(version)).evaluation or {}
    if as_json:
        echo_json(
            {k: v for k, v in report.items() if k != "systems"}
            | {
                "systems": {
                    name: {k: v for k, v in system.items() if k not in ("per_example", "predicted")}
                    if system
                    else None
                    for name, system in report["systems"].items()
                }
            }
        )
        return
    for name, system in report["systems"].items():
        if system:
            low, high = system["ci"]
            click.echo(
                f"{name:<11} {report['headline_name']} {system['headline']:.3f} [{low:.3f}–{high:.3f}]"
            )
    click.echo(
        ("promote recommended: " if result["verdict"]["promote"] else "not recommended: ")
        + result["verdict"]["reason"]
    )


def _registry_action(
    action: str, project_name: str, number: int | None, reason: str, *, again: bool = False
) -> None:
    with migrated() as db_engine:
        try:
            move = versions.request_move(
                db_engine,
                settings(),
                operator(),
                action,
                project_name=project_name,
                number=number,
                reason=reason,
                again=again,
            )
        except RolledBackVersion as exc:
            if action != "promote" or not sys.stdin.isatty():
                hint = f"`ftbot promote {project_name} v{exc.version} --again`"
                raise click.ClickException(f"{exc.note}. To serve it anyway: {hint}.") from exc
            click.confirm(f"{exc.note}. Promote v{exc.version} again?", abort=True)
            move = versions.request_move(
                db_engine,
                settings(),
                operator(),
                action,
                project_name=project_name,
                number=number,
                reason=reason,
                again=True,
            )
    was = f"v{move.previous}" if move.previous else "none"
    click.echo(f"{project_name}: v{move.version} in production (was {was}); manifest {move.manifest}")


@click.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="vN")
@click.option("--reason", default="promoted from the command line", show_default=True)
@click.option(
    "--again",
    is_flag=True,
    help="Confirm promoting a version that production was rolled back from (asked for otherwise).",
)
def promote(project_name: str, version: str, reason: str, again: bool) -> None:
    """Put version vN of PROJECT in production (calls the deploy hook, then writes the manifest)."""
    _registry_action("promote", project_name, version_number(version), reason, again=again)


@click.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="[vN]", required=False)
@click.option("--reason", default="rolled back from the command line", show_default=True)
def rollback(project_name: str, version: str | None, reason: str) -> None:
    """Move PROJECT's production back to what served before the current version was first promoted
    (skipping versions rolled back from), or to vN."""
    _registry_action("rollback", project_name, version_number(version) if version else None, reason)


@click.command()
def reconcile() -> None:
    """One reconcile pass, as bots and workers run every 30 s: settle deployments left half-way
    (telling the deploy hook) and end runs whose job or worker is gone."""
    config = settings()
    with migrated() as db_engine:
        outcomes = reconcile_deploys(db_engine, config)
        ended = reconcile_once(Redis.from_url(config.redis_url))
    for outcome in outcomes:
        click.echo(f"{outcome.project}: {outcome.outcome} — {outcome.detail}")
    click.echo(f"{len(outcomes)} deployment(s) settled, {len(ended)} run(s) ended")


COMMANDS = [versions_cmd, eval_cmd, promote, rollback, reconcile]
