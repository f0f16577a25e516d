"""Shared fixtures: migrated databases (SQLite and PostgreSQL), the Slack emulator, a running bot.

Every test that takes `engine` runs once per database in ``FTBOT_TEST_DATABASES`` (default both).
PostgreSQL must be reachable (``FTBOT_TEST_PG_URL``): a missing server fails the run, it is
never skipped silently.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import yaml
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.app import build_app
from bot.http import FtbotRequestHandler
from runner.core.config import Settings
from runner.core.db import make_engine, upgrade
from tests.slack_client import SlackPeople
from tests.slack_emulator import SlackEmulator

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "slack-manifest.yml"
DATABASES = [
    d.strip() for d in os.environ.get("FTBOT_TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()
]
PG_URL = os.environ.get("FTBOT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    """A private schema in the `test` database, migrated once per session (and per xdist worker)."""
    schema = f"ftbot_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    upgrade(engine)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_all(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=DATABASES)
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Engine]:
    """A migrated, empty database: SQLite in a temp folder, or the session's PostgreSQL schema."""
    if request.param == "sqlite":
        sqlite_engine = make_engine(f"sqlite:///{tmp_path / 'ftbot.db'}")
        upgrade(sqlite_engine)
        yield sqlite_engine
        sqlite_engine.dispose()
    elif request.param == "postgresql":
        postgres_engine = request.getfixturevalue("pg_engine")
        _truncate_all(postgres_engine)
        yield postgres_engine
    else:
        raise ValueError(f"unknown database {request.param!r} in FTBOT_TEST_DATABASES")


def manifest_bot_scopes() -> list[str]:
    """The bot token scopes the app manifest requests: all the emulator grants the bot in tests."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    return list(manifest["oauth_config"]["scopes"]["bot"])


@pytest.fixture
def emulator() -> Iterator[SlackEmulator]:
    with SlackEmulator(bot_token=BOT_TOKEN, scopes=manifest_bot_scopes()) as emu:
        emu.add_channel("CGENERAL", "general")
        emu.add_channel("CDATA", "support-data")
        for user in ("UALICE", "UBOB", "UCAROL", "UDAVE", "UERIN"):
            emu.add_user(user, user[1:].lower())
        yield emu


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own per xdist worker, emptied before and after each test.

    ``FTBOT_TEST_REDIS_DB`` (default 1) is the first database number used, so that test runs of
    separate checkouts on one machine keep apart.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    first = int(os.environ.get("FTBOT_TEST_REDIS_DB", "1"))
    number = first + int(worker.removeprefix("gw") or 0) % (16 - first)
    url = f"redis://127.0.0.1:6379/{number}"
    connection = Redis.from_url(url)
    connection.flushdb()
    yield url
    connection.flushdb()
    connection.close()


@pytest.fixture
def settings(tmp_path: Any, emulator: SlackEmulator, redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=emulator.base_url,
        ftbot_data_dir=tmp_path / "data",
        ftbot_tally_interval=0.2,  # tests see throttled refreshes quickly; the logic is the same
        ftbot_slack_retry_budget=2.0,  # a Retry-After beyond 2 s gives up at once: tests stay quick
    )


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class RunningBot:
    """The real Bolt app behind ftbot's WSGI handler, served over HTTP on a local port."""

    url: str
    slack: SlackPeople
    app: Any
    server: _ThreadingWSGIServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.listener_runner.listener_executor.shutdown(wait=True)


def start_bot(settings: Settings, engine: Engine, emulator: SlackEmulator) -> RunningBot:
    app = build_app(settings, engine)  # its WebClient is the one ftbot serve builds (make_client)
    server = make_server(
        "127.0.0.1",
        0,
        FtbotRequestHandler(
            app,
            engine,
            redis=Redis.from_url(settings.redis_url),
            queues=settings.ftbot_queues,
            settings=settings,
        ),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    return RunningBot(url, SlackPeople(url + "/slack/events", SIGNING_SECRET, emulator), app, server)


@pytest.fixture
def bot(settings: Settings, engine: Engine, emulator: SlackEmulator) -> Iterator[RunningBot]:
    running = start_bot(settings, engine, emulator)
    yield running
    running.stop()


@pytest.fixture
def slack(bot: RunningBot) -> SlackPeople:
    return bot.slack


# Fixtures for training and evaluation tests (a tiny model built once per session, …).
from tests.training_support import database_url, tiny_model, training_settings  # noqa: E402,F401
