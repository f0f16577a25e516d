"""The floor for `bench/ack_latency.py` and `bench/reaction_throughput.py`: a bare Bolt app that acks.

It is ftbot's HTTP stack with ftbot taken out: the same Bolt `App` options (request signatures
verified, token verification off, `process_before_response=True`), its WebClient pointed at
``SLACK_API_URL`` (the benchmark's emulator), Bolt's own WSGI handler at ``/slack/events``, and the
same embedded gunicorn: ``python bench/bare_app.py`` serves it through `bot.server.run_gunicorn`,
so workers, threads, timeouts and keep-alive are exactly what ``ftbot serve`` uses.

Environment: ``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``, ``SLACK_API_URL`` (read by
`runner.core.config.Settings`, as ftbot reads them). ``application`` is also a plain WSGI callable for
any other WSGI server (built on the first request).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from slack_bolt import Ack, App  # noqa: E402
from slack_bolt.adapter.wsgi import SlackRequestHandler  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from runner.core.config import Settings, load_settings  # noqa: E402

PATH = "/slack/events"


def build_app(settings: Settings) -> App:
    """A Bolt app with two listeners: any block action, and any event, acknowledged and nothing else."""
    app = App(
        client=WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10),
        signing_secret=settings.slack_signing_secret or "",
        request_verification_enabled=True,
        token_verification_enabled=False,
        process_before_response=True,  # as ftbot: the ack is sent from the request thread
        logger=logging.getLogger("bare.bolt"),
    )

    @app.action(re.compile(".*"))
    def ack_only(ack: Ack) -> None:
        ack()

    @app.event(re.compile(".*"))
    def nothing(event: dict[str, Any]) -> None:  # events are acknowledged before their listener runs
        return None

    return app


def make_wsgi_app(settings: Settings) -> SlackRequestHandler:
    """The WSGI callable: Bolt's own handler, at ftbot's path."""
    return SlackRequestHandler(build_app(settings), path=PATH)


_lock = threading.Lock()
_wsgi: SlackRequestHandler | None = None


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Module-level WSGI entry point (``gunicorn bench.bare_app:application``)."""
    global _wsgi
    if _wsgi is None:
        with _lock:
            if _wsgi is None:
                _wsgi = make_wsgi_app(load_settings())
    return _wsgi(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    """Serve the bare app with ``ftbot serve``'s gunicorn settings (only the WSGI app differs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    # The same logging set-up as the `ftbot` command line.
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    settings.require("slack_bot_token", "slack_signing_secret", purpose="bench/bare_app.py")

    from bot import server

    # run_gunicorn builds ftbot's options and loads `server.make_wsgi_app(settings)` in each worker;
    # pointing that name at the bare app keeps every gunicorn setting identical to `ftbot serve`.
    server.make_wsgi_app = make_wsgi_app
    server.run_gunicorn(settings, host=args.host, port=args.port, workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    main()
