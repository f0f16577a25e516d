"""The `ftbot` command line: serve the bot, migrate the database, run the interview in a terminal,
and manage dataset projects (create, import, status, snapshot, export).

Configuration errors exit with code 2 and name the variable; see `runner.config`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.engine import Engine

from runner import readiness
from runner.config import Settings, load_settings
from runner.exceptions import ConfigError

if TYPE_CHECKING:
    from sqlmodel import Session

LABELS = {"yes": "Yes", "no": "No", "not_sure": "Not sure"}
KEYS = {
    "y": "yes",
    "yes": "yes",
    "n": "no",
    "no": "no",
    "?": "not_sure",
    "u": "not_sure",
    "not sure": "not_sure",
}


def _settings() -> Settings:
    return load_settings()


def _engine(settings: Settings) -> Engine:
    from runner.db import make_engine

    return make_engine(settings.sqlalchemy_url)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def cli(log_level: str) -> None:
    """ftbot: should we fine-tune? Ask in Slack, label in threads, train and roll back from chat."""
    from runner.logs import configure

    configure(log_level)


# --- database --------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (SQLite under FTBOT_DATA_DIR by default, or DATABASE_URL)."""
    from runner.db import upgrade

    settings = _settings()
    upgrade(_engine(settings), revision)
    click.echo(f"database at {revision}: {settings.sqlalchemy_url.split('@')[-1]}")


# --- serving ---------------------------------------------------------------------------------


@cli.command()
@click.option("--socket", is_flag=True, help="Socket Mode (needs SLACK_APP_TOKEN) instead of HTTP.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
def serve(socket: bool, host: str, port: int, workers: int, threads: int) -> None:
    """Run the Slack bot: HTTP at POST /slack/events and GET /healthz, or Socket Mode."""
    from runner.db import upgrade

    settings = _settings()
    if socket:
        settings.require("slack_bot_token", "slack_app_token", purpose="ftbot serve --socket")
    else:
        settings.require("slack_bot_token", "slack_signing_secret", purpose="ftbot serve")
    settings.refuse_oauth_variables()
    upgrade(_engine(settings))
    if socket:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from bot.app import build_app
        from bot.inbox import Sweeper

        engine = _engine(settings)
        app = build_app(settings, engine, socket_mode=True)
        Sweeper(app, engine, settings).start()  # replays events a crashed process left unfinished
        SocketModeHandler(app, settings.slack_app_token).start()
        return
    from bot.server import run_gunicorn

    run_gunicorn(settings, host=host, port=port, workers=workers, threads=threads)


# --- the readiness interview -----------------------------------------------------------------


def _read_answers(path: Path) -> tuple[dict[str, readiness.Answer], str]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise click.UsageError(f"cannot read answers from {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise click.UsageError(f"{path}: expected a JSON object of question id → answer")
    answers = raw.get("answers", raw)
    try:
        return readiness.parse_answers(answers), str(raw.get("topic", ""))
    except ValueError as exc:
        raise click.UsageError(f"{path}: {exc}") from exc


def _ask(answers: dict[str, readiness.Answer]) -> dict[str, readiness.Answer]:
    click.echo("Answer y (yes), n (no) or ? (not sure); b goes back, q quits.\n")
    while (question := readiness.next_question(answers)) is not None:
        number = len(answers) + 1
        click.echo(
            click.style(f"Question {number} of {len(readiness.QUESTIONS)}: ", bold=True) + question.text
        )
        click.echo(click.style(f"  why it matters: {question.why}", dim=True))
        reply = click.prompt("  answer", prompt_suffix=" [y/n/?/b/q]: ").strip().lower()
        if reply == "q":
            raise click.Abort()
        if reply == "b":
            if answers:
                answers.pop(list(answers)[-1])
            continue
        if reply not in KEYS:
            click.echo("  please answer y, n or ? (or b to go back)")
            continue
        answers[question.id] = readiness.Answer(KEYS[reply])
    return answers


def print_result(result: readiness.Recommendation, answered: int) -> None:
    """A terminal rendering of the recommendation (the same content as the Slack message)."""
    from rich.console import Console
    from rich.panel import Panel

    texts = {q.id: q.text for q in readiness.QUESTIONS}
    lines = [*result.reasons]
    if result.secondary:
        lines.append(f"[bold]Also:[/bold] {result.secondary.value}")
    if result.stopped_early:
        lines.append(f"[dim]Stopped after {answered} questions: the rest could not change this.[/dim]")
    for blocker in result.blockers:
        lines.append(
            f"[yellow]Blocker:[/yellow] {texts[blocker.question_id]} — {LABELS[blocker.answer.value]}"
        )
        lines.append(f"  next step: {blocker.next_step}")
    for mistake in result.mistakes:
        lines.append(f"[red]Avoid:[/red] {mistake}")
    Console().print(Panel("\n".join(lines), title=f"Recommendation: {result.primary.value}", expand=False))


@cli.command()
@click.option("--answers", "answers_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def interview(answers_file: Path | None, as_json: bool) -> None:
    """The readiness interview in the terminal, or non-interactively from an answers file."""
    answers = _read_answers(answers_file)[0] if answers_file else _ask({})
    if readiness.next_question(answers) is not None:
        missing = [q.id for q in readiness.QUESTIONS if q.id not in answers]
        raise click.UsageError(f"the answers leave the outcome open; also answer: {', '.join(missing)}")
    result = readiness.recommend(answers)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result, len(answers))


@cli.command()
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ftbot-demo"), show_default=True
)
@click.option("--quick", is_flag=True, help="A third of the data: the same steps in about a minute (CI).")
def demo(out: Path, quick: bool) -> None:
    """The whole loop on embedded defaults: interview, dataset, reviewers, QLoRA training, evaluation,
    promote and rollback — SQLite, an in-process Redis and the CPU; no Slack needed.

    What Slack would show is rendered here and saved as Block Kit JSON (and charts) under OUT.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for noisy in ("alembic", "rq", "httpx", "transformers", "runner"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from bot.demo import run_demo

    run_demo(out, quick=quick)


# --- dataset projects: create, import, status, snapshot, export ----------------------------------


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "cli"


@contextmanager
def _database() -> Iterator[Session]:
    """A session on the configured database, migrated first so a fresh SQLite file just works.

    Dataset errors (an unknown project, nothing to snapshot, …) become a message and exit code 1.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # before alembic's import-time logging
        logging.getLogger("alembic").setLevel(logging.WARNING)  # keep stderr for what went wrong
    from runner.db import session_scope, upgrade
    from runner.exceptions import DatasetError, TrainingRequestError

    engine = _engine(_settings())
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            yield session
    except (DatasetError, TrainingRequestError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()


def _ids(value: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", value) if part]


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@cli.group()
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
    from runner import datasets
    from runner.exceptions import DatasetError

    spec = datasets.ProjectSpec(
        name=name.strip().lower(),
        task_type=task_type.strip().lower(),
        label_lines="\n".join(part.strip() for part in re.split(r"[,\n]", labels)),
        field_names=field_names,
        reviewers=_ids(reviewers),
        reviewer_groups=_ids(groups),
        min_per_label=min_per_label,
        agreement_threshold=agreement_threshold,
        instructions=instructions,
    )
    with _database() as session:
        problems = spec.problems()
        if not problems and any(p.name == spec.name for p in datasets.list_projects(session)):
            problems["name"] = f"A project named {spec.name} already exists."
        if not problems:
            try:
                created = datasets.create_project(session, spec, owner_id=owner, channel_id=channel)
            except DatasetError as exc:  # taken between the check and the insert
                problems["name"] = str(exc)
    if problems:
        click.echo(f"ftbot: cannot create project {name!r}:", err=True)
        for field_name, problem in problems.items():
            click.echo(f"  {field_name}: {problem}", err=True)
        sys.exit(2)
    legend = datasets.legend(created)
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


@cli.command("projects")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def projects_list(as_json: bool) -> None:
    """List dataset projects with their counts and how many gates pass."""
    from runner import datasets

    with _database() as session:
        rows = [_project_summary(datasets.project_stats(session, p)) for p in datasets.list_projects(session)]
    if as_json:
        _echo_json(rows)
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


@cli.group()
def dataset() -> None:
    """A project's dataset: readiness gates and snapshots."""


@dataset.command("status")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dataset_status(project_name: str, as_json: bool) -> None:
    """The readiness gates of PROJECT: value, threshold, passed, and what to do about a failing one."""
    from runner import datasets

    with _database() as session:
        stats = datasets.project_stats(session, datasets.get_project(session, project_name))
    summary = {
        **_project_summary(stats),
        "agreement": {
            "method": stats.agreement.method,
            "kappa": stats.agreement.kappa,
            "percent": stats.agreement.percent,
        },
        "gates": _gates_json(stats),
    }
    if as_json:
        _echo_json(summary)
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
    from runner import datasets
    from runner.exporting import utc_iso

    with _database() as session:
        found = datasets.get_project(session, project_name)
        snapshot, created = datasets.build_snapshot(session, found, created_by=f"cli:{_whoami()}"[:64])
    if as_json:
        _echo_json(
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


@cli.command("export")
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
    from runner import datasets
    from runner.exporting import export_snapshot

    taken = False
    with _database() as session:
        found = datasets.get_project(session, project_name)
        if snapshot_id:
            snapshot = datasets.get_snapshot(session, found, snapshot_id)
        else:
            latest = datasets.latest_snapshot(session, found)
            if latest is None:
                latest, taken = datasets.build_snapshot(session, found, created_by=f"cli:{_whoami()}"[:64])
            snapshot = latest
        result = export_snapshot(session, found, snapshot, out_dir, redact=not no_redact)
    if as_json:
        _echo_json({**result.to_dict(), "new_snapshot": taken})
        return
    if taken:
        click.echo(f"no snapshot yet: took {snapshot.id}")
    click.echo(
        f"exported snapshot {snapshot.id[:12]} of {found.name} to {out_dir}: {result.n_train} train, "
        f"{result.n_eval} eval, redaction {'on' if result.redacted else 'off'}"
    )
    for path in result.files.values():
        click.echo(f"  {path}")


@cli.command("import")
@click.argument("project_name", metavar="PROJECT")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "imported_by", default=None, help="Who imports (default: your login name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_cmd(project_name: str, file: Path, imported_by: str | None, as_json: bool) -> None:
    """Import labeled examples into PROJECT from a .jsonl/.json or .csv FILE.

    Valid rows are added as decided examples; each rejected row is reported with its number and
    reason. Exit code 1 when no row was added or already present.
    """
    from runner import datasets
    from runner.importing import import_file

    with _database() as session:
        found = datasets.get_project(session, project_name)
        report = import_file(session, found, file, imported_by=imported_by or _whoami())
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(
            f"{file}: {report.added} added, {report.skipped} already present, {len(report.rejected)} rejected"
        )
        for row, reason in report.rejected:
            click.echo(f"  row {row}: {reason}")
    if not report.added and not report.skipped:
        sys.exit(1)


# --- training: worker, train, runs, tiny model ------------------------------------------------


@cli.command()
@click.option("--queues", default=None, help="Comma-separated queues (default FTBOT_QUEUES: train,eval).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's host.pid).")
@click.option("--metrics-port", default=None, type=int, help="Serve Prometheus metrics on this port.")
def worker(queues: str | None, burst: bool, name: str | None, metrics_port: int | None) -> None:
    """Run an RQ worker for training and evaluation jobs (one per GPU; many may share one Redis)."""
    from runner.db import upgrade
    from runner.worker import run_worker, serve_metrics

    settings = _settings()
    upgrade(_engine(settings))
    if metrics_port is not None:
        serve_metrics(settings, metrics_port)
    run_worker(
        settings, queues=tuple(_ids(queues)) if queues else settings.ftbot_queues, burst=burst, name=name
    )


def _follow(run_id: int) -> str:
    """Show a run's progress until it ends; returns its final status."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from runner.db import session_scope
    from runner.models import TERMINAL_RUN_STATUSES, TrainingRun

    engine = _engine(_settings())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(f"run {run_id}", total=None, detail="queued")
        while True:
            with session_scope(engine) as session:
                run = session.get(TrainingRun, run_id)
                assert run is not None
                progress, status = json.loads(run.progress_json or "{}"), run.status
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


@cli.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("options", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--wait", is_flag=True, help="Follow the job to the end with a progress bar.")
@click.option("--inline", is_flag=True, help="Train in this process, without Redis or a worker.")
@click.option("--ignore-gates", is_flag=True, help="Train even when the dataset's readiness gates fail.")
def train(project_name: str, options: tuple[str, ...], wait: bool, inline: bool, ignore_gates: bool) -> None:
    """Snapshot PROJECT and train a LoRA adapter on it (options: base_model, epochs, lr, lora_r, …)."""
    from redis import Redis

    from runner import datasets, jobs
    from runner.models import TrainingRun

    settings = _settings()
    with _database() as session:
        found = datasets.get_project(session, project_name)
        run = jobs.start_training(
            session,
            settings=settings,
            connection=None if inline else Redis.from_url(settings.redis_url),
            project=found,
            overrides=jobs.parse_overrides(list(options)),
            requested_by=f"cli:{_whoami()}"[:64],
            require_gates=not ignore_gates,
        )
        run_id = run.id
    assert run_id is not None
    if inline:
        click.echo(f"run {run_id}: training in this process")
        try:
            jobs.train_job(run_id)
        except Exception as exc:
            jobs.mark_ended(
                run_id, jobs.RunStatus.FAILED, f"{type(exc).__name__}: {exc}", jobs.advice_for(exc)
            )
    elif wait:
        click.echo(f"run {run_id} queued (job {jobs.train_job_id(run_id)})")
        _follow(run_id)
    else:
        click.echo(
            f"run {run_id} queued (job {jobs.train_job_id(run_id)}); follow it with `ftbot runs {found.name}`"
        )
        return
    with _database() as session:
        done = session.get(TrainingRun, run_id)
        assert done is not None
        version = next((v.number for v in jobs.versions(session, found) if v.id == done.version_id), None)
        _print_run(done, version)
        if done.status != "finished":
            sys.exit(1)


@cli.command("runs")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_cmd(project_name: str, as_json: bool) -> None:
    """PROJECT's training runs, newest first, with status and metrics."""
    from runner import datasets, jobs

    with _database() as session:
        found = datasets.get_project(session, project_name)
        numbers = {v.id: v.number for v in jobs.versions(session, found)}
        rows = [
            {
                "id": r.id,
                "status": r.status,
                "snapshot": r.snapshot_id,
                "version": numbers.get(r.version_id),
                "requested_by": r.requested_by,
                "created_at": str(r.created_at),
                "progress": json.loads(r.progress_json or "{}"),
                "metrics": json.loads(r.metrics_json) if r.metrics_json else None,
                "error": r.error,
                "advice": r.advice,
            }
            for r in jobs.runs(session, found)
        ]
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        metrics = row["metrics"] or {}
        detail = (
            f"v{row['version']} · loss {metrics.get('final_train_loss', float('nan')):.4f} · "
            f"{metrics.get('tokens_per_s', 0):.0f} tok/s"
            if row["status"] == "finished"
            else (row["error"] or "")
        )
        click.echo(f"run {row['id']:>4}  {row['status']:<9}  {row['created_at'][:19]}  {detail}")


@cli.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--project", "project_name", default=None, help="Build the vocabulary from this project's texts."
)
@click.option(
    "--synthetic", default=2000, show_default=True, help="Synthetic support tickets for the vocabulary."
)
@click.option("--layers", default=2, show_default=True)
@click.option("--hidden", default=128, show_default=True)
def tiny_model(out_dir: Path, project_name: str | None, synthetic: int, layers: int, hidden: int) -> None:
    """Build a small random Llama-architecture model and a locally trained tokenizer in OUT_DIR.

    No weights are downloaded: tests and the CPU demo train this model. Use it as FTBOT_BASE_MODEL.
    """
    from runner import synthetic as synthetic_data
    from runner.tinymodel import make_tiny_model

    texts = synthetic_data.ticket_texts(synthetic) if synthetic else []
    if project_name:
        from runner import datasets

        with _database() as session:
            found = datasets.get_project(session, project_name)
            texts += [found.instructions, *datasets.legend(found).values()]
            for example in datasets.live_examples(session, found):
                texts += [example.input_text, example.target_text or ""]
    path = make_tiny_model(out_dir, [t for t in texts if t], num_layers=layers, hidden_size=hidden)
    click.echo(f"tiny model written to {path}")


# --- the registry: versions, promote, rollback ---------------------------------------------------


@cli.command("versions")
@click.argument("project_name", metavar="PROJECT")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def versions_cmd(project_name: str, as_json: bool) -> None:
    """PROJECT's model versions: status, lineage (snapshot, base model, config) and eval metrics."""
    from runner import datasets, registry

    with _database() as session:
        found = datasets.get_project(session, project_name)
        rows = [
            {
                "version": v.number,
                "status": v.status,
                "snapshot": v.snapshot_id,
                "base_model": v.base_model,
                "run_id": v.run_id,
                "artifact_path": v.artifact_path,
                "created_at": str(v.created_at),
                "config": json.loads(v.config_json),
                "train_metrics": json.loads(v.metrics_json or "{}"),
                "eval": json.loads(v.eval_json) if v.eval_json else None,
            }
            for v in registry.versions(session, found)
        ]
        deployments = [
            {"action": d.action, "version_id": d.version_id, "by": d.by, "reason": d.reason, "at": str(d.at)}
            for d in registry.history(session, found)
        ]
    if as_json:
        _echo_json({"project": project_name, "versions": rows, "deployments": deployments})
        return
    for row in rows:
        headline = ((row["eval"] or {}).get("candidate") or {}).get("headline")
        detail = f" · eval {headline:.3f}" if isinstance(headline, int | float) else ""
        click.echo(
            f"v{row['version']:<3} {row['status']:<10} snapshot {row['snapshot'][:12]} · "
            f"{row['base_model']}{detail}"
        )


@cli.command("eval")
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="vN")
@click.option("--inline", is_flag=True, help="Evaluate in this process instead of on the eval queue.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (with --inline).")
def eval_cmd(project_name: str, version: str, inline: bool, as_json: bool) -> None:
    """Evaluate vN of PROJECT on its held-out split against the base model and production."""
    from runner import datasets, registry

    settings = _settings()
    with _database() as session:
        found = datasets.get_project(session, project_name)
        version_id = registry.get_version(session, found, _version_number(version)).id
    assert version_id is not None
    if not inline:
        from redis import Redis

        from runner import jobs

        job = jobs.queue(jobs.EVAL_QUEUE, Redis.from_url(settings.redis_url)).enqueue(
            "runner.evaluation.evaluate_version_job", version_id, job_timeout=settings.ftbot_job_timeout
        )
        click.echo(f"evaluation of {project_name} {version} queued (job {job.id})")
        return
    from runner.evaluation import evaluate_and_report

    engine = _engine(settings)
    result = evaluate_and_report(settings, engine, version_id)
    with _database() as session:
        report = json.loads(registry.get_version(session, found, _version_number(version)).eval_json or "{}")
    if as_json:
        _echo_json(
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


def _registry_action(action: str, project_name: str, number: int | None, reason: str) -> None:
    from runner import datasets, registry
    from runner.exceptions import RegistryError

    with _database() as session:
        found = datasets.get_project(session, project_name)
        try:
            move = registry.audited_move(
                session, _settings(), found, action, by=f"cli:{_whoami()}"[:64], number=number, reason=reason
            )
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from exc
    was = f"v{move.previous}" if move.previous else "none"
    click.echo(f"{project_name}: v{move.version} in production (was {was}); manifest {move.manifest}")


def _version_number(text: str) -> int:
    match = re.fullmatch(r"v?(\d+)", text.strip())
    if not match:
        raise click.BadParameter(f"expected a version like v3, got {text!r}")
    return int(match.group(1))


@cli.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="vN")
@click.option("--reason", default="promoted from the command line", show_default=True)
def promote(project_name: str, version: str, reason: str) -> None:
    """Put version vN of PROJECT in production (writes the deployment manifest, calls the hook)."""
    _registry_action("promote", project_name, _version_number(version), reason)


@cli.command()
@click.argument("project_name", metavar="PROJECT")
@click.argument("version", metavar="[vN]", required=False)
@click.option("--reason", default="rolled back from the command line", show_default=True)
def rollback(project_name: str, version: str | None, reason: str) -> None:
    """Move PROJECT's production back to the previous version, or to vN."""
    _registry_action("rollback", project_name, _version_number(version) if version else None, reason)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: configuration errors exit 2 with the variable's name."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except ConfigError as exc:
        click.echo(f"ftbot: configuration error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
