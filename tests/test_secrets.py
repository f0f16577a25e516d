"""No configured secret leaves `ftbot serve`: a whole session — commands, refused requests, a deploy
hook that prints its environment and fails, promote, rollback, the audit log, a crashing listener,
the health details — and then every Slack payload, audit row and log line is searched for the
secret values. On SQLite and PostgreSQL (whose URL carries a password)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import AuditEntry, Deployment
from tests.registry_support import make_project_with_versions, post_summary, state
from tests.serve_support import Served, serve
from tests.slack_client import SlackPeople, buttons
from tests.slack_emulator import SlackEmulator

BOT_TOKEN = "xoxb-4242-4242-SECRETBOTTOKEN9f8e"
SECRETS = {
    "bot token": BOT_TOKEN,
    "signing secret": "signing-SECRET-0a1b2c3d4e5f",
    "a variable given to the hook": "serving-SECRET-key-77aa",
    "the hook URL's password": "hookpw-SECRET-55",
    "the health token": "health-SECRET-token-31",
    "the database password": "dbpw-SECRET-66",
}


@pytest.fixture
def slack_side() -> Iterator[SlackEmulator]:
    with SlackEmulator(bot_token=BOT_TOKEN) as emu:
        emu.add_channel("CGENERAL", "general")
        for user in ("UALICE", "UBOB", "UCAROL"):
            emu.add_user(user, user[1:].lower())
        yield emu


def hook(tmp_path: Path) -> str:
    """A deploy hook that prints everything it was given, and fails the first time it is called
    with a message naming what it had (as hooks written in a hurry do)."""
    script = tmp_path / "hook.sh"
    once = tmp_path / "called-once"
    password = SECRETS["the hook URL's password"]
    script.write_text(
        "#!/bin/sh\n"
        "env >&2\n"
        f'echo "calling https://deploy:{password}@serving.internal/x" >&2\n'
        f'if [ ! -f "{once}" ]; then touch "{once}"; '
        'echo "refused: token=$SLACK_BOT_TOKEN key=$SERVING_API_KEY db=$DATABASE_URL" >&2; exit 1; fi\n'
    )
    script.chmod(0o755)
    return str(script)


def server_database_url(engine, database_url: str) -> str:
    if engine.dialect.name == "sqlite":
        return database_url
    parts = urllib.parse.urlsplit(database_url)  # trust authentication: any password is accepted
    netloc = f"{parts.username}:{SECRETS['the database password']}@{parts.hostname}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def said(emulator: SlackEmulator, words: str) -> list[dict]:
    return [m for m in emulator.messages("CGENERAL") if words in m["text"]]


def wait_ephemeral(emulator: SlackEmulator, user: str, words: str) -> dict:
    return emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == user and words in e["text"]), None),
        what=f"{words!r} for {user}",
    )


def test_a_full_session_shows_no_secret_in_slack_the_audit_log_or_the_server_log(
    engine, settings, database_url, slack_side, redis_url, tmp_path
):
    emulator = slack_side
    settings = settings.model_copy(update={"slack_bot_token": BOT_TOKEN, "slack_api_url": emulator.base_url})
    make_project_with_versions(engine, settings)
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRETS["signing secret"],
        "SLACK_API_URL": emulator.base_url,
        "DATABASE_URL": server_database_url(engine, database_url),
        "REDIS_URL": redis_url,
        "FTBOT_DATA_DIR": str(settings.ftbot_data_dir),
        "FTBOT_ONCALL": "UCAROL",
        "FTBOT_DEPLOY_HOOK": hook(tmp_path),
        "FTBOT_DEPLOY_HOOK_ENV": "SERVING_API_KEY",
        "SERVING_API_KEY": SECRETS["a variable given to the hook"],
        "FTBOT_HEALTH_TOKEN": SECRETS["the health token"],
    }
    answers: list[str] = []
    with serve(env, tmp_path / "serve.log") as served:
        answers += session(served, emulator, engine, settings)
    with session_scope(engine) as session_:
        audit_rows = [e.model_dump_json() for e in session_.exec(select(AuditEntry)).all()]
        deployments = [d.model_dump_json() for d in session_.exec(select(Deployment)).all()]
    payloads = [json.dumps(call.args) for call in emulator.calls] + [json.dumps(emulator.responses())]
    log = served.log()

    # The session really happened, with the hook's output in the log and its reason in Slack.
    assert (
        state(engine)[0] == 1 and len(audit_rows) == 4
    )  # promote refused by the hook, promote, rollback, crash
    assert any("deploy hook exited 1" in row for row in audit_rows)
    assert '"hook_output"' in log and "[redacted]" in log and "listener failed" in log
    for name, value in SECRETS.items():
        for where, texts in (
            ("a Slack payload", payloads),
            ("an audit row", audit_rows + deployments),
            ("the server log", log.splitlines()),
            ("an HTTP answer", answers),
        ):
            leaked = [text for text in texts if value in text]
            assert not leaked, f"{name} in {where}: {leaked[0][:300]}"


def session(served: Served, emulator: SlackEmulator, engine, settings) -> list[str]:
    """What people do in one afternoon; returns the bodies of the HTTP answers."""
    slack = SlackPeople(served.url + "/slack/events", SECRETS["signing secret"], emulator)
    answers = []
    answers.append(slack.slash("help").body)
    answers.append(slack.slash("help", signed=False).body)
    answers.append(slack.slash("help", secret="forged").body)

    post_summary(engine, settings, 2)
    summary = emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if m["text"].startswith("Evaluation")), None),
        what="the summary",
    )
    slack.press(summary, "Promote v2", user="UALICE")
    refusal = wait_ephemeral(emulator, "UALICE", "deploy hook")
    assert "refused:" in refusal["text"], refusal["text"]
    slack.press(summary, "Promote v2", user="UALICE")
    emulator.wait_for(
        lambda: [m for m in emulator.messages("CGENERAL") if "promoted" in m["text"]], what="v2"
    )
    slack.slash("rollback ticket-router v1 bad answers", user="UCAROL")
    emulator.wait_for(
        lambda: [m for m in emulator.messages("CGENERAL") if "rolled back" in m["text"]], what="v1"
    )

    slack.slash("audit ticket-router", user="UBOB")  # no role: who and what, no details
    hidden = wait_ephemeral(emulator, "UBOB", "Audit log")
    assert "Details are shown to" in json.dumps(hidden["blocks"]) and "exited" not in json.dumps(hidden)
    slack.slash("audit ticket-router", user="UALICE")  # the owner sees the details, redacted
    shown = wait_ephemeral(emulator, "UALICE", "Audit log")
    assert "deploy hook exited 1" in json.dumps(shown["blocks"])

    crafted = json.loads(json.dumps(summary))  # a button value ftbot never wrote
    _block, element = buttons(crafted)["Promote v2"]
    element["value"] = json.dumps({"p": "ticket-router", "v": [3]})
    slack.press(crafted, "Promote v2", user="UALICE")
    wait_ephemeral(emulator, "UALICE", "Something went wrong")

    request = urllib.request.Request(
        served.url + "/healthz/details", headers={"Authorization": f"Bearer {SECRETS['the health token']}"}
    )
    answers.append(urllib.request.urlopen(request, timeout=20).read().decode())
    return answers
