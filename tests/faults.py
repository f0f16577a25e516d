"""Database faults on purpose, for tests of what survives them: a trigger makes chosen updates fail
the way a statement or commit does when the connection is lost at that moment."""

from __future__ import annotations

from sqlalchemy.engine import Engine


def _sql(engine: Engine, statements: list[str]) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def fail_updates(engine: Engine, table: str, column: str, when: str = "") -> None:
    """From now on, an UPDATE of `table`.`column` (where `when`, in terms of NEW) fails in the
    database, as a commit does when the connection is lost at that moment."""
    if engine.dialect.name == "sqlite":
        condition = f" WHEN {when}" if when else ""
        _sql(
            engine,
            [
                f"CREATE TRIGGER fail_{table} BEFORE UPDATE OF {column} ON {table}{condition} "
                "BEGIN SELECT RAISE(ABORT, 'the database went away'); END"
            ],
        )
        return
    check = f"IF {when} THEN " if when else ""
    end = " END IF;" if when else ""
    _sql(
        engine,
        [
            f"CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {check}"
            f"RAISE EXCEPTION 'the database went away';{end} RETURN NEW; END $$",
            f"CREATE TRIGGER fail_{table} BEFORE UPDATE OF {column} ON {table} FOR EACH ROW "
            f"EXECUTE FUNCTION fail_{table}()",
        ],
    )


def repair(engine: Engine, table: str) -> None:
    if engine.dialect.name == "sqlite":
        _sql(engine, [f"DROP TRIGGER IF EXISTS fail_{table}"])
    else:
        _sql(
            engine,
            [f"DROP TRIGGER IF EXISTS fail_{table} ON {table}", f"DROP FUNCTION IF EXISTS fail_{table}()"],
        )
