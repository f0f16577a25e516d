"""`ftbot demo` and `ftbot tiny-model`: the whole loop on embedded defaults, and its small model.

The demo package (and torch, for the model) is loaded only when these commands run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from bot.cli.common import database
from runner.data import gates, projects


@click.command()
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("ftbot-demo"), show_default=True
)
@click.option(
    "--quick",
    is_flag=True,
    help="The same steps on a tiny random model and synthetic tickets, in about a minute (a smoke test).",
)
def demo(out: Path, quick: bool) -> None:
    """The whole loop on embedded defaults: interview, dataset, reviewers, QLoRA training of
    SmolLM2-135M (pulled once into FTBOT_MODELS_DIR), evaluation against the baselines, promote and
    rollback — SQLite, an in-process Redis and the CPU; no Slack needed.

    What Slack would show is rendered here and saved as Block Kit JSON (and charts) under OUT.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for noisy in ("alembic", "rq", "httpx", "transformers", "runner"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from demo.run import run_demo

    run_demo(out, quick=quick)


@click.command("tiny-model")
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

    No weights are downloaded: tests and the CPU demo train this model. Use it as FTBOT_BASE_MODEL
    (or base_model=) from a folder under FTBOT_MODELS_DIR or FTBOT_DATA_DIR.
    """
    from demo import synthetic as synthetic_data
    from demo.tinymodel import make_tiny_model

    texts = synthetic_data.ticket_texts(synthetic) if synthetic else []
    if project_name:
        with database() as session:
            found = projects.get_project(session, project_name)
            texts += [found.instructions, *projects.legend(found).values()]
            for example in gates.live_examples(session, found):
                texts += [example.input_text, example.target_text or ""]
    path = make_tiny_model(out_dir, [t for t in texts if t], num_layers=layers, hidden_size=hidden)
    click.echo(f"tiny model written to {path}")


COMMANDS = [demo, tiny_model]
