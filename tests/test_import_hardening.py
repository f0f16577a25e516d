"""Import keeps its promise — bad rows reported by number, the rest kept — for rows built to break it:
oversized CSV fields, deeply nested JSON, NUL characters, text that shows nothing; re-running skips
what was imported, and an import the database dropped mid-way resumes. The same text from Slack: a
NUL is removed (the reply is kept), an invisible reply is refused with a reason. Through the CLI and
signed HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.models import Example
from runner.data import projects
from runner.data.importing import CHECKPOINT_ROWS, MAX_DEPTH
from tests.faults import _sql
from tests.training_support import ROOT

INVISIBLE = "\u200b\u200c\u2060\ufeff \u00ad"


def make_project(engine) -> None:
    with session_scope(engine) as session:
        projects.create_project(
            session,
            projects.ProjectSpec(
                name="ticket-router",
                task_type="classification",
                label_lines="billing\ntechnical",
                reviewers=["U1"],
            ),
            owner_id="UOWNER",
            channel_id="CDATA",
        )


def ftbot_import(database_url: str, tmp_path: Path, path: Path) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update({"DATABASE_URL": database_url, "FTBOT_DATA_DIR": str(tmp_path / "data")})
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "import", "ticket-router", str(path), "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    return done.returncode, report, done.stderr


def rejected(report: dict[str, Any]) -> dict[int, str]:
    return {row["row"]: row["reason"] for row in report["rejected"]}


def stored(engine) -> list[str]:
    with session_scope(engine) as session:
        return [e.input_text for e in session.exec(select(Example).order_by(Example.id)).all()]


def test_a_csv_with_huge_fields_nul_and_invisible_text_keeps_its_good_rows(engine, database_url, tmp_path):
    make_project(engine)
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "label"])
        writer.writerow(["my card was charged twice", "billing"])
        writer.writerow(["x" * 200_000, "billing"])  # over the csv module's 131,072 limit
        writer.writerow(["the app \x00 crashes on start", "technical"])
        writer.writerow([INVISIBLE, "technical"])
        writer.writerow(["refund the extra fee", "billing"])
    code, report, stderr = ftbot_import(database_url, tmp_path, path)
    assert code == 0, stderr
    reasons = rejected(report)
    assert (report["added"], sorted(reasons)) == (2, [2, 3, 4])
    assert "200,000 characters" in reasons[2]
    assert "NUL" in reasons[3]
    assert "shows nothing" in reasons[4]
    assert stored(engine) == ["my card was charged twice", "refund the extra fee"]

    code, again, _ = ftbot_import(database_url, tmp_path, path)
    assert (code, again["added"], again["skipped"], rejected(again).keys()) == (0, 0, 2, reasons.keys())


def test_jsonl_with_deep_nesting_and_nul_keeps_its_good_rows(engine, database_url, tmp_path):
    make_project(engine)
    path = tmp_path / "tickets.jsonl"
    lines = [
        json.dumps({"input": "login fails with an unknown error", "label": "technical"}),
        '{"input": ' + "[" * 100_000 + "]" * 100_000 + ', "label": "billing"}',  # past the recursion limit
        json.dumps({"input": "nested", "label": "billing", "meta": json.loads("[" * 50 + "]" * 50)}),
        json.dumps({"input": "why did the price go up", "label": "billing\u0000"}),
        json.dumps({"input": "\u2800\u3164", "label": "billing"}),  # a blank braille pattern, a filler
        json.dumps({"input": "export produces a blank page", "label": "technical"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    code, report, stderr = ftbot_import(database_url, tmp_path, path)
    assert code == 0, stderr
    reasons = rejected(report)
    assert (report["added"], sorted(reasons)) == (2, [2, 3, 4, 5])
    assert f"more than {MAX_DEPTH} levels" in reasons[2] and f"more than {MAX_DEPTH} levels" in reasons[3]
    assert "NUL" in reasons[4] and "shows nothing" in reasons[5]
    assert stored(engine) == ["login fails with an unknown error", "export produces a blank page"]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_import_the_database_dropped_resumes_where_it_stopped(engine, database_url, tmp_path):
    make_project(engine)
    rows = CHECKPOINT_ROWS + 100
    path = tmp_path / "tickets.jsonl"
    path.write_text(
        "".join(json.dumps({"input": f"ticket number {n}", "label": "billing"}) + "\n" for n in range(rows))
    )
    # The server drops the import's connection at a row past the first checkpoint.
    drop = f"ticket number {CHECKPOINT_ROWS + 50}"
    _sql(
        engine,
        [
            "CREATE FUNCTION drop_import() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.input_text = '{drop}' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER drop_import BEFORE INSERT ON example FOR EACH ROW EXECUTE FUNCTION drop_import()",
        ],
    )
    try:
        code, _report, stderr = ftbot_import(database_url, tmp_path, path)
    finally:
        _sql(
            engine, ["DROP TRIGGER IF EXISTS drop_import ON example", "DROP FUNCTION IF EXISTS drop_import()"]
        )
    assert code != 0 and "terminating connection" in stderr
    with session_scope(engine) as session:
        kept = session.exec(select(func.count()).select_from(Example)).one()
    assert kept == CHECKPOINT_ROWS  # what was committed before the drop stays

    code, report, stderr = ftbot_import(database_url, tmp_path, path)
    assert code == 0, stderr
    assert (report["skipped"], report["added"], report["rejected"]) == (
        CHECKPOINT_ROWS,
        rows - CHECKPOINT_ROWS,
        [],
    )
    assert len(stored(engine)) == rows


# --- the same text from Slack --------------------------------------------------------------------


def project_thread(slack, emulator) -> str:
    assert slack.slash("new", channel="CDATA").status == 200
    view_call = emulator.wait_for(lambda: emulator.calls_to("views.open"), what="views.open")[-1]
    form = {"name": "ticket-router", "task_type": "classification", "labels": "billing\ntechnical"}
    assert slack.submit(view_call.args["view"], {**form, "reviewers": ["UALICE"]}).status == 200
    root = emulator.wait_for(
        lambda: next(
            (m for m in emulator.messages("CDATA") if m["text"].startswith("Dataset ticket-router")), None
        ),
        what="the project's root",
    )
    return root["ts"]


def test_slack_replies_lose_their_nul_and_invisible_replies_are_refused(slack, emulator, engine):
    thread = project_thread(slack, emulator)
    slack.reply("CDATA", thread, "my invoice\u0000 is wrong", "UBOB")
    emulator.wait_for(lambda: stored(engine), what="the reply stored")
    assert stored(engine) == ["my invoice is wrong"]

    slack.reply("CDATA", thread, INVISIBLE, "UBOB")
    told = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals("CDATA") if e["user"] == "UBOB"), None),
        what="the refusal",
    )
    assert "Not added" in told["text"] and "shows nothing" in told["text"]
    assert stored(engine) == ["my invoice is wrong"]
