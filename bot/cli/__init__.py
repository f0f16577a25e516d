"""The `ftbot` command line: one module per command group, gathered here.

Configuration errors exit with code 2 and name the variable (see `runner.core.config`).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from bot.cli import database, demo, interview, models, predict, projects, registry, serve, training
from runner.core.exceptions import ConfigError
from runner.core.logs import configure


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def cli(log_level: str) -> None:
    """ftbot: should we fine-tune? Ask in Slack, label in threads, train and roll back from chat."""
    configure(log_level)


for group in (database, serve, interview, demo, projects, training, registry, predict, models):
    for command in group.COMMANDS:
        cli.add_command(command)


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
