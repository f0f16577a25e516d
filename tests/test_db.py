"""Migrations, health and configuration of the database layer (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from runner.core.config import Settings
from runner.core.db import make_engine
from tests.conftest import start_bot


def test_migrations_match_the_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []


def test_healthz_reports_the_database(bot):
    reply = json.loads(urllib.request.urlopen(bot.url + "/healthz", timeout=5).read())
    assert reply == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_down(settings, emulator):
    unreachable = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    running = start_bot(settings, unreachable, emulator)
    try:
        urllib.request.urlopen(running.url + "/healthz", timeout=10)
        raise AssertionError("expected HTTP 503")
    except urllib.error.HTTPError as error:
        assert error.code == 503
        body = json.loads(error.read())
        assert body["status"] == "unhealthy" and "OperationalError" in body["database"]
    finally:
        running.stop()


def test_database_url_is_normalised_to_psycopg(tmp_path):
    assert Settings(database_url="postgres://u@h/db").sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgresql://u@h/db").sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert Settings(ftbot_data_dir=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'ftbot.db'}"
    assert Settings(ftbot_trainers="U1, U2,,").ftbot_trainers == ("U1", "U2")
