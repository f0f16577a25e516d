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
    assert reply == {"status": "ok"}  # what is wrong, if anything, only on the details path
    details = json.loads(urllib.request.urlopen(bot.url + "/healthz/details", timeout=5).read())
    assert details == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_down(settings, emulator):
    unreachable = make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    running = start_bot(settings, unreachable, emulator)
    try:
        answers = {}
        for path in ("/healthz", "/healthz/details"):
            try:
                urllib.request.urlopen(running.url + path, timeout=10)
                raise AssertionError(f"expected HTTP 503 from {path}")
            except urllib.error.HTTPError as error:
                answers[path] = (error.code, json.loads(error.read()))
    finally:
        running.stop()
    assert answers["/healthz"] == (503, {"status": "unhealthy"})
    code, details = answers["/healthz/details"]
    assert code == 503 and "OperationalError" in details["database"]


def test_database_url_is_normalised_to_psycopg(tmp_path):
    assert Settings(database_url="postgres://u@h/db").sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgresql://u@h/db").sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert Settings(ftbot_data_dir=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'ftbot.db'}"
    assert Settings(ftbot_trainers="U1, U2,,").ftbot_trainers == ("U1", "U2")
