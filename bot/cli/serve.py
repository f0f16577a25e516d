"""`ftbot serve`: the Slack bot over HTTP (gunicorn) or Socket Mode."""

from __future__ import annotations

import click

from bot.cli.common import engine, settings
from runner.core.db import upgrade


@click.command()
@click.option("--socket", is_flag=True, help="Socket Mode (needs SLACK_APP_TOKEN) instead of HTTP.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
def serve(socket: bool, host: str, port: int, workers: int, threads: int) -> None:
    """Run the Slack bot: HTTP at POST /slack/events and GET /healthz, or Socket Mode."""
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
    run_gunicorn(config, host=host, port=port, workers=workers, threads=threads)


COMMANDS = [serve]
