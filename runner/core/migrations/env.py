"""Alembic environment: runs migrations on the engine handed over by `runner.core.db.upgrade`."""

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import runner.core.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # runner.core.db.upgrade holds the connection (and its lock)
        _configure_and_run(connection)
        return
    with config.attributes["engine"].connect() as connection:
        _configure_and_run(connection)
        connection.commit()


run_migrations_online()
