"""`ftbot serve`: the Slack bot over HTTP (gunicorn) or Socket Mode."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bot.cli.common import engine, settings
from runner.core.db import upgrade


@click.command()
@click.option("--socket", is_flag=True, help="Socket Mode (needs SLACK_APP_TOKEN) instead of HTTP.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
@click.option(
    "--event-workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Event workers to start beside the web workers: events' work runs there, acks stay here.",
)
@click.option(
    "--event-nice",
    default=10,
    show_default=True,
    type=click.IntRange(0, 19),
    help="Niceness of those event workers: on a shared machine the acks get the CPU first.",
)
def serve(
    socket: bool, host: str, port: int, workers: int, threads: int, event_workers: int, event_nice: int
) -> None:
    """Run the Slack bot: HTTP at POST /slack/events and GET /healthz, or Socket Mode.

    With --event-workers N, N `ftbot event-worker` processes start beside gunicorn and stop with
    it; events (reactions, thread replies) are acknowledged here and worked on there."""
    config = settings()
    if socket:
        config.require("slack_bot_token", "slack_app_token", purpose="ftbot serve --socket")
    else:
        config.require("slack_bot_token", "slack_signing_secret", purpose="ftbot serve")
    config.refuse_oauth_variables()
    db_engine = engine(config)
    upgrade(db_engine)
    # Bolt and gunicorn are loaded only here: the other commands (a GPU worker's) never need them.
    if socket:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from bot.app import build_app
        from bot.server import start_housekeeping

        app = build_app(config, db_engine, socket_mode=True)
        start_housekeeping(app, db_engine, config)
        SocketModeHandler(app, config.slack_app_token).start()
        return
    from bot.server import run_gunicorn

    db_engine.dispose()  # gunicorn's workers build their own after the fork
    with event_worker_processes(event_workers, event_nice):
        run_gunicorn(config, host=host, port=port, workers=workers, threads=threads)


@contextmanager
def event_worker_processes(count: int, nice: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` ``ftbot event-worker`` processes at niceness `nice`, stopped (SIGTERM, then SIGKILL
    after 30 s) on the way out. One that dies is not restarted: while none is alive, the web
    process runs events itself (bot.handoff)."""
    argv = [sys.executable, "-m", "bot.cli", "event-worker"]
    children = [subprocess.Popen(argv, preexec_fn=lambda: os.nice(nice)) for _ in range(count)]
    try:
        yield children
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@click.command("event-worker")
def event_worker() -> None:
    """Work on the events `ftbot serve` acknowledged (reactions, thread replies), beside it.

    Needs the bot's database, Redis and Slack token. Runs FTBOT_EVENT_WORKER_THREADS listener
    threads; SIGTERM lets them finish first. While one is alive, web processes hand events over
    instead of running them.
    """
    config = settings()
    config.require("slack_bot_token", purpose="ftbot event-worker")
    config.refuse_oauth_variables()
    db_engine = engine(config)
    upgrade(db_engine)
    from bot.server import run_event_worker  # Bolt is loaded only by the commands that need it

    run_event_worker(config, db_engine)


COMMANDS = [serve, event_worker]
