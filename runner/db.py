"""The database engine, sessions, migrations and health check.

Build the engine once per process with `make_engine` and pass it (or sessions from it) down;
nothing here opens a connection at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the SQLAlchemy engine for `url`, tuned for how ftbot uses each backend.

    SQLite gets WAL mode and a busy timeout so the bot's listener threads and the CLI can write
    concurrently; PostgreSQL gets pre-ping so a restarted server does not fail the next request.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://…``).
        kwargs: passed to `create_engine` (tests pass ``connect_args``).

    Returns:
        The engine.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to `engine` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


# Several bot replicas may start at once: on PostgreSQL they take turns through this advisory lock.
_MIGRATION_LOCK_ID = 7_340_021


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (``ftbot db upgrade``; also run by ``ftbot serve`` at start).

    On PostgreSQL the migration runs inside a transaction holding an advisory lock, so replicas that
    start together migrate one after another and the later ones find nothing to do.
    """
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def check_health(engine: Engine) -> str | None:
    """Return None when the database answers, else the error as text (for ``/healthz``)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any driver error means "not healthy"; report it, never raise
        return f"{type(exc).__name__}: {exc}"[:300]
