"""`ftbot interview`: the readiness interview in a terminal, or from an answers file."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel

from runner.interview import readiness

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


@click.command()
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


COMMANDS = [interview]
