"""`ftbot db`: the database schema."""

from __future__ import annotations

import click

from bot.cli.common import engine, settings
from runner.core.db import upgrade


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (SQLite under FTBOT_DATA_DIR by default, or DATABASE_URL)."""
    config = settings()
    upgrade(engine(config), revision)
    click.echo(f"database at {revision}: {config.sqlalchemy_url.split('@')[-1]}")


COMMANDS = [db]
