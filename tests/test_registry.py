"""The model registry: promote, rollback (race-safe), deploy hooks, who may, and the audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.core import audit
from runner.core.db import session_scope
from runner.core.exceptions import DeployHookError, RegistryError, StaleRegistryAction
from runner.core.models import VersionStatus
from runner.core.policy import Person
from runner.data import projects
from runner.registry import versions
from tests.registry_support import make_project_with_versions, move, state


def test_promote_then_rollback_moves_the_alias_and_writes_the_manifest(engine, settings):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    move(engine, settings, "promote", 2, by="UALICE")
    assert state(engine)[0] == 2
    moved = move(engine, settings, "rollback", by="UONCALL", reason="error rate up")
    assert (moved.version, moved.previous) == (1, 2)
    assert state(engine) == (1, {1: "production", 2: "rolled_back", 3: "candidate"})
    manifest = json.loads((Path(settings.ftbot_data_dir) / "deploy" / "ticket-router.json").read_text())
    assert (
        manifest["version"] == 1
        and manifest["adapter_path"].endswith("/v1")
        and manifest["action"] == "rollback"
        and manifest["revision"] == moved.revision == 3
    )
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        log = [(d.action, d.by, d.reason, d.state) for d in reversed(versions.history(session, project))]
        assert versions.alias(session, project).pending_id is None
    assert log == [
        ("promote", "UALICE", "", "done"),
        ("promote", "UALICE", "", "done"),
        ("rollback", "UONCALL", "error rate up", "done"),
    ]


def test_ftbot_versions_tells_which_version_serves(engine, settings, database_url):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1)
    move(engine, settings, "promote", 2)
    move(engine, settings, "promote", 3)
    move(engine, settings, "rollback", reason="error rate up")
    with session_scope(engine) as session:  # v2 kept the adapter of step 40 (its best checkpoint)
        project = projects.get_project(session, "ticket-router")
        second = versions.get_version(session, project, 2)
        second.metrics = {"best_step": 40, "steps": 64, "checkpoints": [[20, 0.5], [40, 0.25], [60, 0.3]]}
        session.add(second)
    env = {**os.environ, "DATABASE_URL": database_url, "FTBOT_DATA_DIR": str(settings.ftbot_data_dir)}

    def versions_cli(*options: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "versions", "ticket-router", *options],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    rows = json.loads(versions_cli("--json"))["versions"]
    listed = {row["version"]: row["status"] for row in rows}
    assert listed == {1: "retired", 2: "production", 3: "rolled_back"}
    assert {row["version"]: row["step"] for row in rows} == {1: None, 2: 40, 3: None}
    assert rows[1]["checkpoints"] == [[20, 0.5], [40, 0.25], [60, 0.3]]
    lines = versions_cli().splitlines()
    assert "step 40 of 64" in lines[1] and "step" not in lines[0]


def test_rollback_to_a_named_version_and_the_refusals(engine, settings):
    make_project_with_versions(engine, settings)
    with pytest.raises(RegistryError, match="no version in production"):
        move(engine, settings, "rollback")
    move(engine, settings, "promote", 1)
    with pytest.raises(RegistryError, match="Nothing to roll back to"):
        move(engine, settings, "rollback")
    move(engine, settings, "promote", 3)
    versions.request_discard(
        engine, settings, Person("U", operator=True), project_name="ticket-router", number=2
    )
    with pytest.raises(RegistryError, match="discarded"):
        move(engine, settings, "promote", 2)
    with pytest.raises(RegistryError, match="no v9"):
        move(engine, settings, "rollback", 9)
    move(engine, settings, "rollback", 1)
    with pytest.raises(StaleRegistryAction, match="already in production"):
        move(engine, settings, "rollback", 1)
    assert state(engine) == (1, {1: "production", 2: "discarded", 3: "rolled_back"})


def test_two_concurrent_rollbacks_from_the_same_summary_roll_back_once(engine, settings):
    make_project_with_versions(engine, settings)
    for number in (1, 2, 3):
        move(engine, settings, "promote", number)
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def press(user: str) -> None:
        barrier.wait()
        try:
            outcomes.append(move(engine, settings, "rollback", by=user, expected=versions.Seen(3, 3)))
        except RegistryError as exc:  # stale, or the other press still deploying
            outcomes.append(exc)

    threads = [threading.Thread(target=press, args=(u,)) for u in ("UONE", "UTWO")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moves = [o for o in outcomes if isinstance(o, versions.Move)]
    stale = [o for o in outcomes if isinstance(o, RegistryError)]
    assert len(moves) == 1 and len(stale) == 1, outcomes
    expected_words = ("out of date", "changed by someone else", "being deployed right now")
    assert any(words in str(stale[0]) for words in expected_words), stale
    assert state(engine)[0] == 2  # one step back, not two


def test_a_failing_deploy_hook_leaves_production_where_it_was(engine, settings, tmp_path):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1)
    manifest = Path(settings.ftbot_data_dir) / "deploy" / "ticket-router.json"
    before = manifest.read_text()
    failing = settings.model_copy(update={"ftbot_deploy_hook": "echo serving system unreachable >&2; exit 3"})
    with pytest.raises(DeployHookError, match="exited 3: serving system unreachable"):
        move(engine, failing, "promote", 2)
    assert state(engine) == (1, {1: "production", 2: "candidate", 3: "candidate"})
    assert manifest.read_text() == before
    assert [p.name for p in manifest.parent.iterdir()] == ["ticket-router.json"]  # no staged leftovers
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        attempts = [(d.state, d.detail) for d in versions.history(session, project, attempts=True)]
        assert versions.alias(session, project).pending_id is None
    assert attempts[0][0] == "failed" and "exited 3" in attempts[0][1]

    seen = tmp_path / "seen.json"
    working = settings.model_copy(update={"ftbot_deploy_hook": f'cp "$FTBOT_MANIFEST" {seen}'})
    move(engine, working, "promote", 2)
    assert json.loads(seen.read_text())["version"] == 2 and state(engine)[0] == 2


def test_a_webhook_receives_the_manifest_and_its_failure_blocks_the_move(engine, settings):
    make_project_with_versions(engine, settings)
    received: list[dict] = []
    answers = [500, 200]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(answers.pop(0))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooked = settings.model_copy(
        update={"ftbot_deploy_hook": f"http://127.0.0.1:{server.server_port}/deploy"}
    )
    try:
        with pytest.raises(DeployHookError, match="500"):
            move(engine, hooked, "promote", 1)
        assert state(engine)[0] is None
        move(engine, hooked, "promote", 1)
    finally:
        server.shutdown()
    assert [r["version"] for r in received] == [1, 1] and state(engine)[0] == 1


def test_slack_rollback_needs_on_call_and_every_attempt_is_audited(slack, emulator, engine, settings, bot):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    move(engine, settings, "promote", 2, by="UALICE")
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL"])
    settings.ftbot_oncall = ("SONCALL",)  # the running bot reads the same settings object

    assert slack.slash("rollback ticket-router", user="UBOB").status == 200
    refusal = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UBOB"], what="refusal"
    )[0]
    assert "on-call" in refusal["text"] and state(engine)[0] == 2

    assert slack.slash("rollback ticket-router latency doubled", user="UCAROL").status == 200
    announcement = emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if "rolled back" in m["text"]), None),
        what="announce",
    )
    assert "v2 → v1" in announcement["text"] and "latency doubled" in announcement["text"]
    assert state(engine)[0] == 1

    assert slack.slash("audit ticket-router", user="UALICE").status == 200
    listing = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["text"].startswith("Audit log")), None),
        what="audit",
    )
    text = json.dumps(listing["blocks"], ensure_ascii=False)
    assert "refused" in text and "UBOB" in text and "v2 → v1" in text
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        entries = [
            (e.user_id, e.action, e.allowed) for e in reversed(audit.entries(session, project_id=project.id))
        ]
    assert entries == [
        ("UALICE", "promote", True),
        ("UALICE", "promote", True),
        ("UBOB", "rollback", False),
        ("UCAROL", "rollback", True),
    ]


def test_version_statuses_are_the_documented_set():
    # Whether a version serves is the alias's alone; "production" and "retired" are derived from it.
    assert {s.value for s in VersionStatus} == {"candidate", "discarded", "rolled_back"}


def test_an_on_call_group_slack_could_not_list_is_asked_again_not_remembered_empty(
    slack, emulator, engine, settings, bot
):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    move(engine, settings, "promote", 2, by="UALICE")
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL"])
    settings.ftbot_oncall = ("SONCALL",)
    emulator.fail_next("usergroups.users.list", "internal_error", times=2)

    # Slack cannot say who is on call (asked before the decision, and again by it): the rollback is
    # refused, since nobody is known to be on call ...
    assert slack.slash("rollback ticket-router", user="UCAROL").status == 200
    emulator.wait_for(lambda: [e for e in emulator.ephemerals() if e["user"] == "UCAROL"], what="refusal")
    assert state(engine)[0] == 2
    # ... and the next attempt asks Slack again instead of trusting an empty answer for a minute.
    assert slack.slash("rollback ticket-router", user="UCAROL").status == 200
    emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if "rolled back" in m["text"]), None),
        what="the rollback",
    )
    assert state(engine)[0] == 1
    assert len(emulator.calls_to("usergroups.users.list")) == 3
