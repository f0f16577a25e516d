"""`ftbot project`, `projects`, `dataset`, `import`, `export`: dataset projects from the terminal."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.common import cli_actor, database, echo_json, ids, whoami
from runner.core.exceptions import DatasetError
from runner.data import gates, projects, snapshots
from runner.data.exporting import export_snapshot, utc_iso
from runner.data.importing import import_file


@click.group()
def project() -> None:
    """Dataset projects (the Slack project modal does the same as `project create`)."""


@project.command("create")
@click.argument("name")
@click.option("--task", "task_type", required=True, help="classification, extraction or generation.")
@click.option("--labels", default="", help='Labels, comma-separated or one per line ("billing :moneybag:").')
@click.option("--fields", "field_names", default="", help="Extraction fields, comma-separated.")
@click.option("--reviewers", default="", help="Slack user ids allowed to vote, comma-separated.")
@click.option("--groups", default="", help="Slack user group ids allowed to vote, comma-separated.")
@click.option("--channel", default="", help="Channel id the project's thread lives in.")
@click.option("--owner", default="", help="Slack user id of the owner (settles conflicts).")
@click.option("--min-per-label", default=10, show_default=True, type=int)
@click.option("--agreement-threshold", default=0.6, show_default=True, type=float)
@click.option("--instructions", default="", help="System prompt used for training and export.")
def project_create(
    name: str,
    task_type: str,
    labels: str,
    field_names: str,
    reviewers: str,
    groups: str,
    channel: str,
    owner: str,
    min_per_label: int,
    agreement_threshold: float,
    instructions: str,
) -> None:
    """Create dataset project NAME; invalid input is reported by field (exit code 2)."""
    spec = projects.ProjectSpec(
        name=name.strip().lower(),
        task_type=task_type.strip().lower(),
        label_lines="\n".join(part.strip() for part in re.split(r"[,\n]", labels)),
        field_names=field_names,
        reviewers=ids(reviewers),
        reviewer_groups=ids(groups),
        min_per_label=min_per_label,
        agreement_threshold=agreement_threshold,
        instructions=instructions,
    )
    with database() as session:
        problems = spec.problems()
        if not problems and any(p.name == spec.name for p in projects.list_projects(session)):
            problems["name"] = f"A project named {spec.name} already exists."
        if not problems:
            try:
                created = projects.create_project(session, spec, owner_id=owner, channel_id=channel)
            except DatasetError as exc:  # taken between the check and the insert
                problems["name"] = str(exc)
    if problems:
        click.echo(f"ftbot: cannot create project {name!r}:", err=True)
        for field_name, problem in problems.items():
            click.echo(f"  {field_name}: {problem}", err=True)
        sys.exit(2)
    legend = projects.legend(created)
    click.echo(f"created project {created.name} ({created.task_type})")
    click.echo("legend: " + ", ".join(f":{emoji}: {value}" for emoji, value in legend.items()))


def _gates_json(stats: Any) -> list[dict[str, Any]]:
    return [dataclasses.asdict(gate) for gate in stats.gates]


def _project_summary(stats: Any) -> dict[str, Any]:
    return {
        "name": stats.project.name,
        "task_type": stats.project.task_type,
        "examples": stats.total,
        "counts": stats.counts,
        "pending": stats.pending,
        "conflicts": len(stats.conflicts),
        "gates_passed": sum(1 for gate in stats.gates if gate.passed),
        "gates": len(stats.gates),
        "trainable": stats.trainable,
    }


@click.command("projects")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def projects_list(as_json: bool) -> None:
    """List dataset projects with their counts and how many gates pass."""
    with database() as session:
        rows = [_project_summary(gates.project_stats(session, p)) for p in projects.list_projects(session)]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No projects yet: create one with `ftbot project create`.")
    for row in rows:
        counts = ", ".join(f"{label} {n}" for label, n in row["counts"].items()) or "none usable"
        click.echo(
            f"{row['name']} ({row['task_type']}): {row['examples']} examples ({counts}), "
            f"{row['pending']} pending, "
            f"{row['conflicts']} conflicts, gates {row['gates_passed']}/{row['gates']}"
            + (" — ready to train" if row["trainable"] else "")
        )


@click.group()
def dataset() -> None:
    """A project's dataset: readiness gates and snapshots."""


@dataset.command("status")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dataset_status(project_name: str, as_json: bool) -> None:
    """The readiness gates of PROJECT: value, threshold, passed, and what to do about a failing one."""
    with database() as session:
        stats = gates.project_stats(session, projects.get_project(session, project_name))
    summary = {
        **_project_summary(stats),
        "agreement": {
            "method": stats.agreement.method,
            "coefficient": stats.agreement.coefficient,
            "percent": stats.agreement.percent,
        },
        "gates": _gates_json(stats),
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{stats.project.name} ({stats.project.task_type}): {stats.total} examples, {stats.pending} pending, "
        f"{len(stats.conflicts)} conflicts"
    )
    for gate in stats.gates:
        click.echo(
            f"  [{'pass' if gate.passed else 'FAIL'}] {gate.name}: {gate.value} (needs {gate.threshold})"
        )
        if not gate.passed:
            click.echo(f"         {gate.advice}")
    click.echo("ready to train" if stats.trainable else "not ready to train yet")


@dataset.command("snapshot")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dataset_snapshot(project_name: str, as_json: bool) -> None:
    """Freeze PROJECT's decided examples into a content-addressed snapshot (same content, same id)."""
    with database() as session:
        found = projects.get_project(session, project_name)
        snapshot, created = snapshots.build_snapshot(session, found, created_by=cli_actor())
    if as_json:
        echo_json(
            {
                "id": snapshot.id,
                "project": found.name,
                "train": snapshot.n_train,
                "eval": snapshot.n_eval,
                "new": created,
                "created_at": utc_iso(snapshot.created_at),
            }
        )
        return
    click.echo(
        f"snapshot {snapshot.id} of {found.name}: {snapshot.n_train} train, {snapshot.n_eval} eval "
        + ("(new)" if created else "(unchanged: the same content was already snapshotted)")
    )


@click.command("export")
@click.argument("project_name", metavar="PROJECT")
@click.option("--snapshot", "snapshot_id", default=None, help="Snapshot id or prefix (default: the latest).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write.",
)
@click.option("--no-redact", is_flag=True, help="Keep emails and phone numbers as they are.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export_cmd(
    project_name: str, snapshot_id: str | None, out_dir: Path, no_redact: bool, as_json: bool
) -> None:
    """Write a snapshot of PROJECT as train.jsonl / eval.jsonl (chat messages) plus a dataset card.

    Without --snapshot the latest snapshot is exported; when there is none, one is taken first.
    """
    taken = False
    with database() as session:
        found = projects.get_project(session, project_name)
        if snapshot_id:
            snapshot = snapshots.get_snapshot(session, found, snapshot_id)
        else:
            latest = snapshots.latest_snapshot(session, found)
            if latest is None:
                latest, taken = snapshots.build_snapshot(session, found, created_by=cli_actor())
            snapshot = latest
        result = export_snapshot(session, found, snapshot, out_dir, redact=not no_redact)
    if as_json:
        echo_json({**result.to_dict(), "new_snapshot": taken})
        return
    if taken:
        click.echo(f"no snapshot yet: took {snapshot.id}")
    click.echo(
        f"exported snapshot {snapshot.id[:12]} of {found.name} to {out_dir}: {result.n_train} train, "
        f"{result.n_eval} eval, redaction {'on' if result.redacted else 'off'}"
    )
    for path in result.files.values():
        click.echo(f"  {path}")


@click.command("import")
@click.argument("project_name", metavar="PROJECT")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "imported_by", default=None, help="Who imports (default: your login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_cmd(project_name: str, file: Path, imported_by: str | None, as_json: bool) -> None:
    """Import labeled examples into PROJECT from a .jsonl/.json or .csv FILE.

    Valid rows are added as decided examples; each rejected row is reported with its number and
    reason. Exit code 1 when no row was added or already present.
    """
    with database() as session:
        found = projects.get_project(session, project_name)
        # Committed as it goes: an interrupted import keeps what it added, and running it again
        # skips those rows and carries on.
        report = import_file(
            session, found, file, imported_by=imported_by or whoami(), checkpoint=session.commit
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(
            f"{file}: {report.added} added, {report.skipped} already present, {len(report.rejected)} rejected"
        )
        for row, reason in report.rejected:
            click.echo(f"  row {row}: {reason}")
    if not report.added and not report.skipped:
        sys.exit(1)


COMMANDS = [project, projects_list, dataset, export_cmd, import_cmd]
