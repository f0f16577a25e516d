"""The database engine, sessions, migrations and health check.

Build the engine once per process with `make_engine` and pass it (or sessions from it) down;
nothing here opens a connection at import time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the SQLAlchemy engine for `url`, tuned for how ftbot uses each backend.

    SQLite gets WAL mode and a busy timeout so the bot's listener threads and the CLI can write
    concurrently, and real transactions: SQLAlchemy (not the sqlite3 module, which would begin only
    at the first write and break savepoints) begins each one with ``BEGIN IMMEDIATE``, so a unit of
    work that reads and then writes never fails to upgrade its lock; writers take turns. PostgreSQL
    gets pre-ping so a restarted server does not fail the next request.

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
            dbapi_conn.isolation_level = None  # the module never begins or commits on its own
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def commit_without_waiting_for_disk(engine: Engine) -> None:
    """PostgreSQL: this engine's commits return before their WAL reaches the disk
    (``synchronous_commit = off``); a server crash can lose the last few hundred milliseconds of
    them, atomically, never half of one, and never one that a later synchronous commit of any
    session depends on (that commit flushes the WAL before it).

    For processes whose every write can be done again from a record that was committed
    synchronously: event workers (`bot.handoff`), whose work replays from the inbox. Their commits
    then no longer queue for the disk in front of the acks' inbox inserts. SQLite: no change.
    """
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _asynchronous_commit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("SET synchronous_commit = off")
        dbapi_conn.commit()  # a session setting, kept when the pool rolls the connection back


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: a session that commits once at the end, or rolls back on an error.

    Every request, job and command opens one; the services it calls take the session and never
    commit, so everything a request changes lands together or not at all.
    """
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_ignore(session: Session | Connection, row: SQLModel, *, conflict: Sequence[str]) -> bool:
    """Insert `row` unless a row with the same `conflict` columns exists; True when it was inserted.

    ``INSERT … ON CONFLICT DO NOTHING`` on both databases: a redelivered event or a concurrent
    duplicate becomes a no-op without failing (and so without rolling back) the caller's transaction.
    """
    table = row.__table__  # type: ignore[attr-defined]
    values = {c.name: getattr(row, c.name) for c in table.columns if getattr(row, c.name) is not None}
    dialect = (session.dialect if isinstance(session, Connection) else session.get_bind().dialect).name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(*(table.c[name] for name in conflict))  # a row back only when inserted
    )
    return session.execute(statement).first() is not None


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
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it; references to it must not be enforced meanwhile
            # (the pragma only takes effect outside a transaction), and are checked afterwards.
            _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the migration left rows whose references do not resolve")
        finally:
            if sqlite:
                _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=ON")


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to `revision` (tests of the migrations use it)."""
    cfg = alembic_config(engine)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        with connection.begin():
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, revision)
        if sqlite:
            _sqlite_outside_transaction(connection, "PRAGMA foreign_keys=ON")


def _sqlite_outside_transaction(connection: Any, statement: str) -> None:
    """Run `statement` on the raw sqlite3 connection, outside any transaction (pragmas need that)."""
    raw = connection.connection.dbapi_connection
    raw.execute(statement)


def check_health(engine: Engine) -> str | None:
    """Return None when the database answers, else the error as text (for ``/healthz``)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any driver error means "not healthy"; report it, never raise
        return f"{type(exc).__name__}: {exc}"[:300]
