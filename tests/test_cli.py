"""The `ftbot` console script, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SIGNING_SECRET
from tests.slack_client import SlackSide

FTBOT = [sys.executable, "-m", "bot.cli"]
ROOT = Path(__file__).resolve().parent.parent
SLACK_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "DATABASE_URL",
)


def run(args, *, env=None, input=None, tmp_path=None, timeout=60):
    base = {k: v for k, v in os.environ.items() if k not in SLACK_VARS}
    if tmp_path is not None:
        base["FTBOT_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        FTBOT + args,
        env={**base, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_interview_from_an_answers_file_prints_json(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"facts_change": "yes", "multi_step": "yes"}))
    done = run(["interview", "--answers", str(answers), "--json"], tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["primary"] == "RAG" and result["stopped_early"] is True


def test_interview_answers_file_errors_name_the_problem(tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"facts_change": "maybe"}))
    done = run(["interview", "--answers", str(answers)], tmp_path=tmp_path)
    assert done.returncode == 2 and "maybe" in done.stderr
    answers.write_text(json.dumps({"facts_change": "no"}))
    done = run(["interview", "--answers", str(answers)], tmp_path=tmp_path)
    assert done.returncode == 2 and "multi_step" in done.stderr


def test_interview_in_the_terminal(tmp_path):
    # facts? not sure, multi-step no, instructions no, then all eight checklist items yes
    keys = "?\nn\nn\n" + "y\n" * 8
    done = run(["interview"], input=keys, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Recommendation: Fine-tuning" in done.stdout
    # the last two soft checklist items cannot change a Fine-tuning outcome once the rest are yes
    assert "Question 9 of 11" in done.stdout and "Question 10 of 11" not in done.stdout
    assert "Stopped after 9 questions" in done.stdout


def test_terminal_interview_back_goes_to_the_previous_question(tmp_path):
    keys = "n\nb\ny\ny\n"  # no, back, yes (facts change), yes (multi-step) → RAG, decided
    done = run(["interview"], input=keys, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Question 1 of 11") == 2 and "Recommendation: RAG" in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve"], {}, ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]),
        (
            ["serve"],
            {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "changeme"},
            ["SLACK_SIGNING_SECRET"],
        ),
        (["serve", "--socket"], {"SLACK_BOT_TOKEN": "xoxb-1"}, ["SLACK_APP_TOKEN"]),
        (
            ["serve"],
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_SIGNING_SECRET": "s",
                "SLACK_CLIENT_ID": "1",
                "SLACK_CLIENT_SECRET": "2",
            },
            ["SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"],
        ),
    ],
)
def test_missing_configuration_exits_2_naming_the_variable(tmp_path, args, env, named):
    done = run(args, env=env, tmp_path=tmp_path)
    assert done.returncode == 2
    for name in named:
        assert name in done.stderr


def test_db_upgrade_creates_the_sqlite_database_under_the_data_dir(tmp_path):
    done = run(["db", "upgrade"], tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "ftbot.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_health_and_signed_requests(tmp_path, emulator):
    port = _free_port()
    env = {
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": emulator.base_url,
    }
    base = {k: v for k, v in os.environ.items() if k not in SLACK_VARS}
    server = subprocess.Popen(
        [*FTBOT, "serve", "--host", "127.0.0.1", "--port", str(port), "--threads", "4"],
        env={**base, **env, "FTBOT_DATA_DIR": str(tmp_path / "data")},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        for line in server.stdout:  # gunicorn logs "Booting worker" once it accepts requests
            if "Booting worker" in line:
                health = json.loads(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
                )
                break
        assert health == {"status": "ok"}  # the details are on /healthz/details, for this host only
        details = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/details", timeout=10).read()
        assert json.loads(details) == {"status": "ok", "database": "ok", "events": "this process"}
        slack = SlackSide(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, emulator)
        reply = slack.slash("nonsense")
        assert reply.status == 200 and "nonsense" in json.dumps(reply.json())
        assert slack.slash("help", secret="forged").status == 401
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
