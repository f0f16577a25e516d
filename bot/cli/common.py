"""What every command group shares: settings, the database, and how results are printed."""

from __future__ import annotations

import getpass
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.engine import Engine
from sqlmodel import Session

from runner.core.config import Settings, load_settings
from runner.core.db import make_engine, session_scope, upgrade
from runner.core.exceptions import FtbotError
from runner.core.policy import Person


def settings() -> Settings:
    return load_settings()


def engine(config: Settings | None = None) -> Engine:
    return make_engine((config or settings()).sqlalchemy_url)


def whoami() -> str:
    """The login name, for audit entries made from the command line."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "cli"


def cli_actor() -> str:
    return f"cli:{whoami()}"[:64]


def operator() -> Person:
    """Whoever runs the command, as the policy sees them: an operator, audited as ``cli:<login>``."""
    return Person.cli(whoami())


@contextmanager
def migrated() -> Iterator[Engine]:
    """The configured database's engine, migrated; ftbot's own errors become a message (exit 1)."""
    db_engine = engine()
    try:
        upgrade(db_engine)
        yield db_engine
    except FtbotError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db_engine.dispose()


@contextmanager
def database() -> Iterator[Session]:
    """One session (one unit of work) on the configured database, migrated first so a fresh SQLite
    file just works. ftbot's own errors (an unknown project, nothing to snapshot, …) become a message
    and exit code 1.
    """
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # before alembic's import-time logging
        logging.getLogger("alembic").setLevel(logging.WARNING)  # keep stderr for what went wrong
    db_engine = engine()
    try:
        upgrade(db_engine)
        with session_scope(db_engine) as session:
            yield session
    except FtbotError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db_engine.dispose()


def ids(value: str) -> list[str]:
    return [part for part in re.split(r"[,\s]+", value) if part]


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def version_number(text: str) -> int:
    match = re.fullmatch(r"v?(\d+)", text.strip())
    if not match:
        raise click.BadParameter(f"expected a version like v3, got {text!r}")
    return int(match.group(1))
