"""The `ftbot` command line: serve the bot, migrate the database, run the interview in a terminal.

Configuration errors exit with code 2 and name the variable; see `runner.config`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine

from runner import readiness
from runner.config import Settings, load_settings
from runner.exceptions import ConfigError

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
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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

        app = build_app(settings, _engine(settings), socket_mode=True)
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
def demo(out: Path) -> None:
    """Walk the support-ticket routing use case through the readiness interview, no Slack needed.

    Prints each question and answer, the recommendation, and writes the Slack message it would
    post (Block Kit JSON) to OUT.
    """
    from importlib.resources import as_file, files

    from runner.render import render

    with as_file(files("runner") / "data" / "support_triage_answers.json") as path:
        answers, topic = _read_answers(path)
    asked: dict[str, readiness.Answer] = {}
    click.echo(click.style(f"Use case: {topic}\n", bold=True))
    while (question := readiness.next_question(asked)) is not None:
        asked[question.id] = answers[question.id]
        click.echo(f"Q{len(asked):>2} {question.text}\n    → {LABELS[asked[question.id].value]}")
    result = readiness.recommend(asked)
    print_result(result, len(asked))
    message = render(
        "interview_result.json.j2",
        interview_id=0,
        user_id="UDEMO",
        topic=topic,
        result=result.to_dict(),
        secondary_reason="",
        drivers=[f"{qid}: {LABELS[a.value]}" for qid, a in result.drivers],
        answered=len(asked),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "recommendation.blocks.json").write_text(json.dumps(message, indent=2, ensure_ascii=False))
    click.echo(f"\nSlack message (Block Kit JSON): {out / 'recommendation.blocks.json'}")


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
