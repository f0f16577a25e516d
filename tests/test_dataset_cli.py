"""Dataset projects outside Slack: create, import, snapshot and export.

The runner functions run on both databases through the `engine` fixture; the `ftbot` commands run
as a user runs them (a subprocess) on a fresh SQLite database under a temporary FTBOT_DATA_DIR.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project
from runner.data import examples, gates, projects, snapshots, textnorm
from runner.data.exporting import CARD_JSON, CARD_MD, EVAL_FILE, TRAIN_FILE, export_snapshot, write_atomic
from runner.data.importing import import_file

FTBOT = [sys.executable, "-m", "bot.cli"]
ROOT = Path(__file__).resolve().parent.parent
INSTRUCTIONS = "Route the support ticket to billing or technical."
EMAIL, PHONE = "jane.doe@example.com", "+1 (555) 123-4567"
BILLING = [
    f"I was charged twice this month, write to {EMAIL} or call {PHONE}",
    "Please send a copy of my invoice",
    "My card was declined at checkout",
    "How do I update my billing address",
    "Refund the extra fee on my account",
    "Why did my subscription price go up",
    "Can I pay annually instead of monthly",
    "The receipt shows the wrong company name",
    "Cancel my plan and stop future payments",
    "I need a VAT number on the invoice",
    "Apply the discount code I was promised",
    "The trial converted to paid without warning",
]
TECHNICAL = [
    "The app crashes when I open settings",
    "Login fails with an unknown error",
    "Sync stops after the latest update",
    "Export to PDF produces a blank page",
    "Notifications never arrive on Android",
    "The dashboard takes a minute to load",
    "Password reset email link is broken",
    "Search returns nothing for exact names",
    "Dark mode makes the buttons invisible",
    "File upload stalls at ninety percent",
    "The API returns a timeout for large queries",
    "Calendar integration duplicates every event",
]


# --- helpers ----------------------------------------------------------------------------------------


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


def make_project(session: Session, task: str = "classification", **overrides: Any) -> Project:
    spec = projects.ProjectSpec(
        name=overrides.pop("name", f"{task}-project"),
        task_type=task,
        label_lines="billing\ntechnical" if task == "classification" else "",
        field_names="name,city" if task == "extraction" else "",
        reviewers=["UALICE", "UBOB"],
        instructions=overrides.pop("instructions", INSTRUCTIONS),
        **overrides,
    )
    return projects.create_project(session, spec, owner_id="UOWNER", channel_id="CDATA")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Rows as lines: a str is written as is (for malformed or blank lines), anything else as JSON."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def labelled_rows() -> list[dict[str, str]]:
    return [{"input": t, "label": "billing"} for t in BILLING] + [
        {"text": t, "label": "technical"} for t in TECHNICAL
    ]


def reasons(report: Any) -> dict[int, str]:
    return dict(report.rejected)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ftbot(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_") and k != "DATABASE_URL"}
    env["FTBOT_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        FTBOT + list(args), env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


# --- import -----------------------------------------------------------------------------------------


def test_import_jsonl_keeps_valid_rows_and_reports_each_bad_one(session, tmp_path):
    project = make_project(session)
    path = write_jsonl(
        tmp_path / "tickets.jsonl",
        [
            {"input": BILLING[1], "label": "billing"},  # 1
            {"text": TECHNICAL[0], "label": "Technical"},  # 2: labels match case-insensitively
            '{"input": "no closing brace"',  # 3
            [1, 2],  # 4
            {"input": "   ", "label": "billing"},  # 5
            "",  # 6: blank lines are passed over
            {"input": BILLING[2], "label": "sales"},  # 7
            {  # 8: chat format; the system message is ignored
                "messages": [
                    {"role": "system", "content": "ignored"},
                    {"role": "user", "content": BILLING[3]},
                    {"role": "assistant", "content": "billing"},
                ]
            },
            {"input": f"  {TECHNICAL[0]} ", "label": "technical"},  # 9
            {"label": "billing"},  # 10
            {"input": BILLING[4]},  # 11
            {"input": BILLING[5], "label": 3},  # 12
        ],
    )
    report = import_file(session, project, path, imported_by="tester")
    assert (report.added, report.skipped) == (3, 0)
    found = reasons(report)
    assert sorted(found) == [3, 4, 5, 7, 9, 10, 11, 12]
    assert found[3].startswith("malformed JSON")
    assert found[4] == "not an object (a JSON array)"
    assert found[5] == "empty input"
    assert "'sales'" in found[7] and "billing, technical" in found[7]
    assert found[9] == "duplicate of row 2"
    assert found[10] == "missing input"
    assert found[11] == "missing label"
    assert found[12] == "the label must be text, not int"

    examples = session.exec(select(Example).order_by(col(Example.id))).all()
    assert [(e.input_text, e.final_label) for e in examples] == [
        (BILLING[1], "billing"),
        (TECHNICAL[0], "technical"),
        (BILLING[3], "billing"),
    ]
    for example in examples:
        assert example.source == "import" and example.channel_id == ""
        assert example.decided_by == "import:tester" and example.decided_at is not None
        assert 0 < len(example.message_ts) <= 48

    again = import_file(session, project, path, imported_by="someone-else")
    assert (again.added, again.skipped, again.rejected) == (0, 3, report.rejected)
    assert len(session.exec(select(Example)).all()) == 3


def test_import_csv_for_extraction_validates_the_target_fields(session, tmp_path):
    project = make_project(session, "extraction")
    target = json.dumps
    path = write_csv(
        tmp_path / "orders.csv",
        ["Input", "output"],  # header names are matched case-insensitively
        [
            ["Ship to Ana in Lisbon", target({"name": "Ana", "city": "Lisbon"})],  # 1
            ["Ship to Bo\nwho lives in Oslo", target({"name": "Bo", "city": "Oslo"})],  # 2: two lines
            ["Ship to Cy", target({"name": "Cy"})],  # 3
            ["Ship to Di in Rome", "not json"],  # 4
            ["Ship to Ed in Bonn", ""],  # 5
            ["", target({"name": "X", "city": "Y"})],  # 6
            ["only one cell"],  # 7
            ["Ship to Fa in Nice", target({"name": "Fa", "city": "Nice", "zip": "06000"})],  # 8
            ["Ship to Gu in Graz", "[1, 2]"],  # 9
        ],
    )
    report = import_file(session, project, path, imported_by="tester")
    assert (report.added, report.skipped) == (2, 0)
    found = reasons(report)
    assert sorted(found) == [3, 4, 5, 6, 7, 8, 9]
    assert "missing city" in found[3]
    assert found[4].startswith("The target must be JSON")
    assert found[5] == "empty target output"
    assert found[6] == "empty input"
    assert found[7] == "1 values, but the header has 2 columns"
    assert "unexpected zip" in found[8]
    assert found[9] == "The target must be a JSON object."
    examples = session.exec(select(Example).order_by(col(Example.id))).all()
    assert [e.input_text for e in examples] == ["Ship to Ana in Lisbon", "Ship to Bo\nwho lives in Oslo"]
    assert [json.loads(e.target_text or "") for e in examples][1] == {"name": "Bo", "city": "Oslo"}
    assert {e.final_label for e in examples} == {projects.ACCEPT}


def test_import_for_generation_reads_chat_rows_and_needs_a_target(session, tmp_path):
    project = make_project(session, "generation")
    path = write_jsonl(
        tmp_path / "replies.json",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Where is my parcel?"},
                    {"role": "assistant", "content": "It left the depot this morning."},
                ]
            },
            {"input": "Can I change the address?", "target": "Yes, until it ships."},
            {"input": "Do you ship abroad?"},
            {"input": "Is it gift wrapped?", "label": "billing"},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}]},
            {"input": "Can I pay later?", "output": {"answer": "no"}},
            {"messages": "not a list"},
        ],
    )
    report = import_file(session, project, path, imported_by="tester")
    assert report.added == 2
    found = reasons(report)
    assert found == {
        3: "missing target output",
        4: "missing target output",
        5: "only single-turn conversations (one user and one assistant message) can be imported",
        6: "the target output must be text, not dict",
        7: "messages must be a list of objects with role and content",
    }
    targets = [e.target_text for e in session.exec(select(Example).order_by(col(Example.id))).all()]
    assert targets == ["It left the depot this morning.", "Yes, until it ships."]

    array = tmp_path / "array.json"  # a .json file may also hold one JSON array; items count from 1
    array.write_text(
        json.dumps([{"input": "Do you ship to Norway?", "output": "Yes."}, {"input": "?"}], indent=2)
    )
    report = import_file(session, project, array, imported_by="tester")
    assert (report.added, reasons(report)) == (1, {2: "missing target output"})


def test_a_row_already_in_the_project_is_rejected_with_the_example_it_repeats(session, tmp_path):
    project = make_project(session)
    first = import_file(
        session, project, write_jsonl(tmp_path / "a.jsonl", labelled_rows()[:2]), imported_by="tester"
    )
    assert first.added == 2
    from_slack, _ = examples.add_example(
        session,
        project,
        channel_id="CDATA",
        message_ts="1700000000.000100",
        author_id="UALICE",
        text=BILLING[5],
    )
    other = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"input": BILLING[0].replace(" ", "  "), "label": "billing"},  # whitespace differs only
            {"input": BILLING[5], "label": "billing"},
            {"input": BILLING[6], "label": "billing"},
        ],
    )
    report = import_file(session, project, other, imported_by="tester")
    assert report.added == 1
    imported_first = session.exec(select(Example).order_by(col(Example.id))).first()
    assert imported_first is not None
    assert reasons(report) == {
        1: f"already imported as example {imported_first.id}",
        2: f"already in the project (from thread) as example {from_slack.id}",
    }


def test_files_that_cannot_be_imported_are_refused_as_a_whole(session, tmp_path):
    project = make_project(session)
    text_file = tmp_path / "tickets.txt"
    text_file.write_text("billing: refund please\n")
    with pytest.raises(DatasetError, match=r"\.jsonl .*\.csv"):
        import_file(session, project, text_file, imported_by="tester")
    no_input = write_csv(tmp_path / "a.csv", ["body", "label"], [["refund please", "billing"]])
    with pytest.raises(DatasetError, match="input or text column"):
        import_file(session, project, no_input, imported_by="tester")
    no_label = write_csv(tmp_path / "b.csv", ["text", "notes"], [["refund please", ""]])
    with pytest.raises(DatasetError, match="label or output or target column"):
        import_file(session, project, no_label, imported_by="tester")
    latin1 = tmp_path / "c.jsonl"
    latin1.write_bytes('{"input": "café", "label": "billing"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        import_file(session, project, latin1, imported_by="tester")
    assert session.exec(select(Example)).all() == []


# --- snapshot and export ----------------------------------------------------------------------------


def test_imported_rows_count_as_decided_and_snapshot_is_stable(session, tmp_path):
    project = make_project(session)
    report = import_file(
        session, project, write_jsonl(tmp_path / "t.jsonl", labelled_rows()), imported_by="tester"
    )
    assert report.added == 24
    stats = gates.project_stats(session, project)
    assert stats.counts == {"billing": 12, "technical": 12} and stats.pending == 0 and not stats.conflicts
    snapshot, created = snapshots.build_snapshot(session, project, created_by="tester")
    again, created_again = snapshots.build_snapshot(session, project, created_by="tester")
    assert created and not created_again and again.id == snapshot.id
    assert snapshot.n_train + snapshot.n_eval == 24 and snapshot.n_eval > 0
    rows = snapshots.snapshot_rows(session, snapshot.id)
    assert [r.target for r in rows] == ["billing"] * 12 + ["technical"] * 12


def test_export_writes_chat_jsonl_splits_and_a_dataset_card(session, tmp_path):
    project = make_project(session)
    import_file(session, project, write_jsonl(tmp_path / "t.jsonl", labelled_rows()), imported_by="tester")
    snapshot, _ = snapshots.build_snapshot(session, project)
    rows = snapshots.snapshot_rows(session, snapshot.id)
    out = tmp_path / "out"
    result = export_snapshot(session, project, snapshot, out)
    assert sorted(p.name for p in out.iterdir()) == sorted([TRAIN_FILE, EVAL_FILE, CARD_JSON, CARD_MD])
    assert (result.n_train, result.n_eval) == (snapshot.n_train, snapshot.n_eval)

    for split_name, file_name in (("train", TRAIN_FILE), ("eval", EVAL_FILE)):
        records = read_jsonl(out / file_name)
        expected = [r for r in rows if r.split == split_name]  # example-id order
        assert (
            len(records) == len(expected) == (snapshot.n_train if split_name == "train" else snapshot.n_eval)
        )
        assert [rec["messages"] for rec in records] == [
            [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": textnorm.redact(r.input_text)},
                {"role": "assistant", "content": r.label},
            ]
            for r in expected
        ]
    exported = (out / TRAIN_FILE).read_text() + (out / EVAL_FILE).read_text()
    assert EMAIL not in exported and "555" not in exported
    assert "[EMAIL]" in exported and "[PHONE]" in exported

    card = json.loads((out / CARD_JSON).read_text())
    assert card["snapshot"] == snapshot.id and card["project"] == project.name
    assert card["task_type"] == "classification" and card["format"] == "messages"
    assert card["instructions"] == INSTRUCTIONS and card["redaction"] is True and card["fields"] == []
    assert card["legend"] == {":one:": "billing", ":two:": "technical"}
    assert set(card["agreement"]) >= {"method", "coefficient", "percent"}
    assert card["created_at"].endswith("+00:00")
    counts = card["counts"]
    assert (counts["train"], counts["eval"], counts["total"]) == (snapshot.n_train, snapshot.n_eval, 24)
    assert {label: n["train"] + n["eval"] for label, n in counts["per_label"].items()} == {
        "billing": 12,
        "technical": 12,
    }
    markdown = (out / CARD_MD).read_text()
    assert snapshot.id in markdown and "| billing |" in markdown and INSTRUCTIONS in markdown

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    export_snapshot(session, project, snapshot, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # deterministic, no temp files left

    raw = tmp_path / "raw"
    kept = export_snapshot(session, project, snapshot, raw, redact=False)
    assert kept.redacted is False
    assert EMAIL in (raw / TRAIN_FILE).read_text() + (raw / EVAL_FILE).read_text()
    assert json.loads((raw / CARD_JSON).read_text())["redaction"] is False


def test_export_of_a_target_task_redacts_inside_the_json_and_omits_an_empty_system_prompt(session, tmp_path):
    project = make_project(session, "extraction", instructions="")
    rows = [
        {"input": f"Ship to Ana in Lisbon, mail {EMAIL}", "output": {"name": EMAIL, "city": "Lisbon"}},
        {"input": "Ship to Bo in Oslo, order 5551234567", "output": {"name": "Bo", "city": 5551234567}},
    ]
    import_file(session, project, write_jsonl(tmp_path / "t.jsonl", rows), imported_by="tester")
    snapshot, _ = snapshots.build_snapshot(session, project)
    export_snapshot(session, project, snapshot, tmp_path / "out")
    records = read_jsonl(tmp_path / "out" / TRAIN_FILE) + read_jsonl(tmp_path / "out" / EVAL_FILE)
    assert len(records) == 2
    by_input = {r["messages"][0]["content"]: r["messages"] for r in records}
    assert all([m["role"] for m in messages] == ["user", "assistant"] for messages in by_input.values())
    ana = by_input["Ship to Ana in Lisbon, mail [EMAIL]"]
    assert json.loads(ana[1]["content"]) == {"name": "[EMAIL]", "city": "Lisbon"}
    bo = by_input["Ship to Bo in Oslo, order [PHONE]"]
    assert json.loads(bo[1]["content"]) == {"name": "Bo", "city": 5551234567}  # still valid JSON
    card = json.loads((tmp_path / "out" / CARD_JSON).read_text())
    assert card["fields"] == ["name", "city"] and card["counts"]["total"] == 2
    assert sum(card["counts"]["per_label"]["accepted"].values()) == 2


def test_write_atomic_leaves_the_old_file_when_interrupted(tmp_path):
    target = tmp_path / "train.jsonl"
    target.write_text("old\n")

    def chunks() -> Iterator[str]:
        yield "new line\n"
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, chunks())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


# --- the ftbot commands -----------------------------------------------------------------------------


def test_project_create_reports_problems_by_field_and_exits_2(tmp_path):
    done = ftbot(tmp_path, "project", "create", "Bad Name!", "--task", "classification", "--labels", "only")
    assert done.returncode == 2
    for line in (
        "name: Use 2–63 lowercase",
        "labels: Give at least two labels",
        "reviewers: Pick at least one",
    ):
        assert line in done.stderr
    done = ftbot(tmp_path, "project", "create", "orders", "--task", "extraction", "--reviewers", "U1")
    assert done.returncode == 2 and "fields: Name the JSON fields" in done.stderr
    done = ftbot(tmp_path, "project", "create", "orders", "--task", "summarise", "--reviewers", "U1")
    assert done.returncode == 2 and "task_type: Choose classification" in done.stderr
    done = ftbot(
        tmp_path, "project", "create", "orders", "--task", "classification", "--labels", "a,b", "--reviewers",
        "U1", "--agreement-threshold", "1.5",
    )  # fmt: skip
    assert done.returncode == 2 and "agreement_threshold:" in done.stderr
    done = ftbot(tmp_path, "project", "create", "orders", "--task", "generation", "--min-per-label", "x")
    assert done.returncode == 2 and "min-per-label" in done.stderr
    created = ftbot(tmp_path, "project", "create", "orders", "--task", "generation", "--groups", "S1")
    assert created.returncode == 0, created.stderr
    again = ftbot(tmp_path, "project", "create", "orders", "--task", "generation", "--groups", "S1")
    assert again.returncode == 2 and "name: A project named orders already exists." in again.stderr


def test_cli_create_import_snapshot_export(tmp_path):
    created = ftbot(
        tmp_path, "project", "create", "ticket-router", "--task", "classification",
        "--labels", "billing\ntechnical :wrench:", "--reviewers", "UALICE,UBOB", "--owner", "UOWNER",
        "--channel", "CDATA", "--min-per-label", "5", "--instructions", INSTRUCTIONS,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert ":one: billing" in created.stdout and ":wrench: technical" in created.stdout

    rows: list[Any] = labelled_rows()[:20]
    jsonl = write_jsonl(tmp_path / "tickets.jsonl", [*rows[:12], "{oops", {"input": "x", "label": "sales"}])
    done = ftbot(tmp_path, "import", "ticket-router", str(jsonl), "--by", "tester")
    assert done.returncode == 0, done.stderr
    assert "12 added, 0 already present, 2 rejected" in done.stdout
    assert "row 13: malformed JSON" in done.stdout and "row 14: label 'sales'" in done.stdout

    csv_file = write_csv(
        tmp_path / "more.csv",
        ["text", "label"],
        [[r.get("input") or r["text"], r["label"]] for r in labelled_rows()[12:]] + [["", "billing"]],
    )
    done = ftbot(tmp_path, "import", "ticket-router", str(csv_file), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["skipped"]) == (12, 0)
    assert report["rejected"] == [{"row": 13, "reason": "empty input"}]

    again = ftbot(tmp_path, "import", "ticket-router", str(jsonl), "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["added"], json.loads(again.stdout)["skipped"]) == (0, 12)

    all_bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"input": "y"}])
    done = ftbot(tmp_path, "import", "ticket-router", str(all_bad))
    assert done.returncode == 1 and "0 added, 0 already present, 2 rejected" in done.stdout

    listed = json.loads(ftbot(tmp_path, "projects", "--json").stdout)
    assert [(p["name"], p["examples"], p["counts"]) for p in listed] == [
        ("ticket-router", 24, {"billing": 12, "technical": 12})
    ]
    status = ftbot(tmp_path, "dataset", "status", "ticket-router", "--json")
    assert status.returncode == 0, status.stderr
    gates = {g["name"]: g for g in json.loads(status.stdout)["gates"]}
    assert gates["Examples per label"]["passed"] is True and gates["Examples per label"]["threshold"] == "≥ 5"
    # imported labels have no reviewer votes to compare: the gate says so instead of blocking
    agreement_gate = gates["Reviewer agreement"]
    assert agreement_gate["passed"] is True and "imported" in agreement_gate["value"]
    text_status = ftbot(tmp_path, "dataset", "status", "ticket-router")
    assert (
        "[pass] Examples per label" in text_status.stdout
        and "[pass] Reviewer agreement: n/a: every label was imported" in text_status.stdout
    )

    first = json.loads(ftbot(tmp_path, "dataset", "snapshot", "ticket-router", "--json").stdout)
    second = json.loads(ftbot(tmp_path, "dataset", "snapshot", "ticket-router", "--json").stdout)
    assert first["new"] is True and second["new"] is False and first["id"] == second["id"]
    assert first["train"] + first["eval"] == 24 and first["eval"] > 0

    out = tmp_path / "export"
    done = ftbot(tmp_path, "export", "ticket-router", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"exported snapshot {first['id'][:12]}" in done.stdout and "redaction on" in done.stdout
    train, held_out = read_jsonl(out / TRAIN_FILE), read_jsonl(out / EVAL_FILE)
    assert (len(train), len(held_out)) == (first["train"], first["eval"])
    assert all(r["messages"][0] == {"role": "system", "content": INSTRUCTIONS} for r in train + held_out)
    assert EMAIL not in (out / TRAIN_FILE).read_text() + (out / EVAL_FILE).read_text()
    assert json.loads((out / CARD_JSON).read_text())["snapshot"] == first["id"]

    raw = tmp_path / "raw"
    done = ftbot(
        tmp_path, "export", "ticket-router", "--snapshot", first["id"][:10], "--out", str(raw), "--no-redact"
    )
    assert done.returncode == 0, done.stderr
    assert EMAIL in (raw / TRAIN_FILE).read_text() + (raw / EVAL_FILE).read_text()
    assert json.loads((raw / CARD_JSON).read_text())["redaction"] is False

    missing = ftbot(tmp_path, "export", "ticket-router", "--snapshot", "ffffzz", "--out", str(raw))
    assert missing.returncode == 1 and "No snapshot of ticket-router matches 'ffffzz'" in missing.stderr


def test_export_without_a_snapshot_takes_one_first(tmp_path):
    created = ftbot(
        tmp_path, "project", "create", "router", "--task", "classification", "--labels", "billing,technical",
        "--reviewers", "U1",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    rows = write_jsonl(tmp_path / "t.jsonl", labelled_rows())
    assert ftbot(tmp_path, "import", "router", str(rows)).returncode == 0
    done = ftbot(tmp_path, "export", "router", "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["new_snapshot"] is True and result["train"] + result["eval"] == 24
    snapshot = json.loads(ftbot(tmp_path, "dataset", "snapshot", "router", "--json").stdout)
    assert snapshot["id"] == result["snapshot"] and snapshot["new"] is False


def test_an_unknown_project_names_the_existing_ones_and_exits_1(tmp_path):
    for name in ("alpha", "beta"):
        assert (
            ftbot(tmp_path, "project", "create", name, "--task", "generation", "--reviewers", "U1").returncode
            == 0
        )
    for args in (
        ["dataset", "status", "gamma"],
        ["dataset", "snapshot", "gamma"],
        ["export", "gamma", "--out", "x"],
    ):
        done = ftbot(tmp_path, *args)
        assert done.returncode == 1
        assert "No project named 'gamma'" in done.stderr and "alpha, beta" in done.stderr
    empty = ftbot(tmp_path, "dataset", "snapshot", "alpha")
    assert empty.returncode == 1 and "nothing to snapshot" in empty.stderr
