"""`ftbot predict`: ask a version (production by default) for its answer, as the pilot does."""

from __future__ import annotations

import re
import time

import click
from redis import Redis

from bot.cli.common import echo_json, migrated, settings
from runner.core.db import session_scope
from runner.core.models import PredictionStatus
from runner.data import projects
from runner.jobs import queues
from runner.jobs.predict import answer_queued
from runner.registry import predictions


@click.command("predict")
@click.argument("project_name", metavar="PROJECT")
@click.argument("words", metavar='[vN] "TEXT"', nargs=-1, required=True)
@click.option("--inline", is_flag=True, help="Answer in this process instead of on the predict queue.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for the predict worker.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict(project_name: str, words: tuple[str, ...], inline: bool, timeout: float, as_json: bool) -> None:
    """Ask version vN of PROJECT (production when no version is named) for its answer to TEXT.

    The prediction goes on the predict queue (`ftbot worker --queues predict` answers it with warm
    models, or FTBOT_INFERENCE_URL's server does); --inline answers it here."""
    number = None
    if len(words) > 1 and re.fullmatch(r"v\d+", words[0]):
        number, words = int(words[0][1:]), words[1:]
    text = " ".join(words).strip()
    if not text:
        raise click.UsageError("Give the text to predict.")
    config = settings()
    with migrated() as db_engine:
        with session_scope(db_engine) as session:
            project = projects.get_project(session, project_name)
            version = predictions.resolve_version(session, project, number)
            prediction, _ = predictions.ask(session, project, version, text)
            prediction_id, version_number = prediction.id, version.number
        assert prediction_id is not None
        if inline:
            answer_queued(config, db_engine)
        else:
            queues.enqueue_prediction(prediction_id, connection=Redis.from_url(config.redis_url))
        deadline = time.monotonic() + timeout
        while True:
            with session_scope(db_engine) as session:
                found = predictions.get(session, prediction_id)
                status = found.status
                row = {
                    "project": project_name,
                    "version": version_number,
                    "prediction_id": prediction_id,
                    "status": str(status),
                    "output": found.output_text,
                    "label": found.label,
                    "confidence": found.confidence,
                    "seconds": found.model_seconds,
                    "error": found.error,
                }
            if status in (PredictionStatus.DONE, PredictionStatus.FAILED):
                break
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"prediction {prediction_id} is still {status} after {timeout:.0f} s: "
                    "is `ftbot worker --queues predict` running?"
                )
            time.sleep(0.2)
    if as_json:
        echo_json(row)
        return
    if status == PredictionStatus.FAILED:
        raise click.ClickException(f"prediction failed: {row['error']}")
    confidence = f" (confidence {row['confidence']:.0%})" if row["confidence"] is not None else ""
    answer = row["label"] if row["label"] is not None else row["output"]
    click.echo(f"{project_name} v{version_number}: {answer}{confidence}")


COMMANDS = [predict]
