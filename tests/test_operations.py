"""Operations: Prometheus metrics from the bot and the job figures, structured JSON logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import exposition
from runner.core.db import session_scope
from runner.core.models import RunStatus, TrainingRun
from runner.data import projects, snapshots
from tests.training_support import seed_project

ROOT = Path(__file__).resolve().parent.parent


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_bot_counts_requests_and_ack_latency_and_reports_jobs(bot, slack, emulator, engine):
    before = scrape(bot.url)
    key = ("ftbot_slack_requests_total", (("kind", "command"), ("status", "200")))
    assert slack.slash("help").status == 200
    assert slack.slash("help", secret="forged").status == 401
    after = scrape(bot.url)
    assert after[key] == before.get(key, 0) + 1
    # Refused before its body is parsed, so counted as unverified rather than by kind.
    refused = ("ftbot_slack_requests_total", (("kind", "unverified"), ("status", "401")))
    assert after[refused] == before.get(refused, 0) + 1
    count = ("ftbot_ack_seconds_count", (("kind", "command"),))
    assert after[count] == before.get(count, 0) + 1
    assert ("ftbot_queue_jobs", (("queue", "train"), ("state", "queued"))) in after
    assert after[("ftbot_training_runs", (("status", "queued"),))] == 0


def test_job_figures_come_from_the_database(engine):
    seed_project(engine, n=8)
    with session_scope(engine) as session:
        snapshot, _ = snapshots.build_snapshot(session, projects.get_project(session, "ticket-router"))
        for status, metrics in (
            (RunStatus.FINISHED, {"wall_time_s": 30.0, "tokens_per_s": 4000.0}),
            (RunStatus.FAILED, None),
            (RunStatus.RUNNING, None),
        ):
            session.add(
                TrainingRun(
                    project_id=1,
                    snapshot_id=snapshot.id,
                    status=status.value,
                    config={},
                    metrics=metrics or None,
                )
            )
        session.commit()
    text = exposition(engine).decode()
    assert re.search(r'ftbot_training_runs\{status="finished"\} 1\.0', text)
    assert re.search(r'ftbot_training_runs\{status="running"\} 1\.0', text)
    assert "ftbot_training_run_seconds_sum 30.0" in text
    assert 'ftbot_training_tokens_per_second{project="ticket-router"} 4000.0' in text


def test_logs_are_json_lines_when_asked(tmp_path):
    env = {**os.environ, "FTBOT_LOG_FORMAT": "json", "FTBOT_DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    assert any(line["logger"].startswith("alembic") for line in lines)
