"""The layers hold at run time too: the bot serves Slack without ever loading the training stack.

`make lint` checks the import graph (lint-imports); this checks what a real process loads: a bot
that answers a slash command, a thread reply and a reaction, and the CLI's entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "runner.ml")

SERVE_AND_REPORT = textwrap.dedent(
    """
    import json, sys, threading
    from wsgiref.simple_server import make_server
    from redis import Redis
    from slack_sdk import WebClient

    from bot.app import build_app
    from bot.http import FtbotRequestHandler
    from runner.core.config import Settings
    from runner.core.db import make_engine, upgrade
    from tests.slack_client import SlackPeople
    from tests.slack_emulator import SlackEmulator

    data = sys.argv[1]
    with SlackEmulator(bot_token="xoxb-test") as emulator:
        emulator.add_channel("CGENERAL", "general")
        emulator.add_user("UALICE", "alice")
        settings = Settings(
            slack_bot_token="xoxb-test", slack_signing_secret="s", slack_api_url=emulator.base_url,
            ftbot_data_dir=data, redis_url="redis://127.0.0.1:1/0",
        )
        engine = make_engine(settings.sqlalchemy_url)
        upgrade(engine)
        app = build_app(settings, engine, client=WebClient(token="xoxb-test", base_url=emulator.base_url))
        server = make_server("127.0.0.1", 0, FtbotRequestHandler(app, engine, settings=settings))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        slack = SlackPeople(f"http://127.0.0.1:{server.server_port}/slack/events", "s", emulator)
        statuses = [slack.slash("history").status]
        posted = emulator.post_user_message("CGENERAL", "a ticket", "UALICE")
        statuses.append(slack.react("CGENERAL", posted["ts"], "one", "UALICE").status)
        emulator.wait_for(lambda: emulator.ephemerals("CGENERAL"), what="the history answer")
        app.listener_runner.listener_executor.shutdown(wait=True)
        server.shutdown()
    print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules)}))
    """
)


def _loaded_heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or m.startswith("runner.ml")]


def test_serving_slack_requests_never_loads_the_training_stack(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200]
    assert (
        "bot.app" in report["modules"] and "runner.slack.payloads" in report["modules"]
    )  # it did load the bot
    assert _loaded_heavy(report["modules"]) == []


def test_the_command_line_starts_without_the_training_stack():
    script = "import json, sys; import bot.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout)
    assert "bot.cli.training" in modules and _loaded_heavy(modules) == []
