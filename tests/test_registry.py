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
from runner.core.models import ModelVersion, Snapshot, VersionStatus
from runner.data import projects
from runner.registry import versions


def make_project_with_versions(engine, settings, count: int = 3) -> None:
    """A project with `count` registered candidate versions (adapter folders on disk)."""
    with session_scope(engine) as session:
        project = projects.create_project(
            session,
            projects.ProjectSpec(
                name="ticket-router",
                task_type="classification",
                label_lines="billing\nother",
                reviewers=["UALICE"],
            ),
            owner_id="UALICE",
            channel_id="CGENERAL",
        )
        project.root_ts = "1700000000.000100"
        session.add(project)
        session.add(Snapshot(id="f" * 64, project_id=project.id))
        session.commit()
        for number in range(1, count + 1):
            folder = Path(settings.ftbot_data_dir) / "artifacts" / "ticket-router" / f"v{number}"
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text("{}")
            session.add(
                ModelVersion(
                    project_id=project.id,
                    number=number,
                    snapshot_id="f" * 64,
                    base_model="tiny",
                    artifact_path=str(folder),
                    config={},
                )
            )
        session.commit()


def state(engine) -> tuple[int | None, dict[int, str]]:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        current = versions.production(session, project)
        return (
            current.number if current else None,
            {v.number: versions.status_of(session, v) for v in versions.versions(session, project)},
        )


def test_promote_then_rollback_moves_the_alias_and_writes_the_manifest(engine, settings):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        versions.promote(session, settings, project, 1, by="UALICE")
        versions.promote(session, settings, project, 2, by="UALICE")
        assert versions.production(session, project).number == 2
        move = versions.rollback(session, settings, project, by="UONCALL", reason="error rate up")
    assert (move.version, move.previous) == (1, 2)
    assert state(engine) == (1, {1: "production", 2: "retired", 3: "candidate"})
    manifest = json.loads((Path(settings.ftbot_data_dir) / "deploy" / "ticket-router.json").read_text())
    assert (
        manifest["version"] == 1
        and manifest["adapter_path"].endswith("/v1")
        and manifest["action"] == "rollback"
    )
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        log = [(d.action, d.by, d.reason) for d in reversed(versions.history(session, project))]
    assert log == [
        ("promote", "UALICE", ""),
        ("promote", "UALICE", ""),
        ("rollback", "UONCALL", "error rate up"),
    ]


def test_ftbot_versions_tells_which_version_serves(engine, settings, database_url):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        versions.promote(session, settings, project, 1, by="UALICE")
        versions.promote(session, settings, project, 2, by="UALICE")
        versions.rollback(session, settings, project, by="UONCALL", reason="error rate up")
    env = {**os.environ, "DATABASE_URL": database_url, "FTBOT_DATA_DIR": str(settings.ftbot_data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "versions", "ticket-router", "--json"],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = {row["version"]: row["status"] for row in json.loads(done.stdout)["versions"]}
    assert listed == {1: "production", 2: "retired", 3: "candidate"}


def test_rollback_to_a_named_version_and_the_refusals(engine, settings):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        with pytest.raises(RegistryError, match="no version in production"):
            versions.rollback(session, settings, project, by="U")
        versions.promote(session, settings, project, 1, by="U")
        with pytest.raises(RegistryError, match="nothing before it"):
            versions.rollback(session, settings, project, by="U")
        versions.promote(session, settings, project, 3, by="U")
        versions.discard(session, project, 2, by="U")
        with pytest.raises(RegistryError, match="discarded"):
            versions.promote(session, settings, project, 2, by="U")
        with pytest.raises(RegistryError, match="no v9"):
            versions.rollback(session, settings, project, by="U", to=9)
        versions.rollback(session, settings, project, by="U", to=1)
        with pytest.raises(StaleRegistryAction, match="already in production"):
            versions.rollback(session, settings, project, by="U", to=1)
    assert state(engine) == (1, {1: "production", 2: "discarded", 3: "retired"})


def test_two_concurrent_rollbacks_from_the_same_summary_roll_back_once(engine, settings):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        for number in (1, 2, 3):
            versions.promote(session, settings, project, number, by="U")
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def press(user: str) -> None:
        barrier.wait()
        try:
            with session_scope(engine) as session:
                project = projects.get_project(session, "ticket-router")
                outcomes.append(
                    versions.rollback(session, settings, project, by=user, expected=versions.Seen(3))
                )
        except StaleRegistryAction as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=press, args=(u,)) for u in ("UONE", "UTWO")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moves = [o for o in outcomes if isinstance(o, versions.Move)]
    stale = [o for o in outcomes if isinstance(o, StaleRegistryAction)]
    assert len(moves) == 1 and len(stale) == 1
    assert "no longer in production" in str(stale[0]) or "changed by someone else" in str(stale[0])
    assert state(engine)[0] == 2  # one step back, not two


def test_a_failing_deploy_hook_leaves_production_where_it_was(engine, settings, tmp_path):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        versions.promote(session, settings, project, 1, by="U")
    manifest = Path(settings.ftbot_data_dir) / "deploy" / "ticket-router.json"
    before = manifest.read_text()
    failing = settings.model_copy(update={"ftbot_deploy_hook": "echo serving system unreachable >&2; exit 3"})
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        with pytest.raises(DeployHookError, match="exited 3: serving system unreachable"):
            versions.promote(session, failing, project, 2, by="U")
    assert state(engine) == (1, {1: "production", 2: "candidate", 3: "candidate"})
    assert manifest.read_text() == before
    assert [p.name for p in manifest.parent.iterdir()] == ["ticket-router.json"]  # no staged leftovers

    seen = tmp_path / "seen.json"
    working = settings.model_copy(update={"ftbot_deploy_hook": f'cp "$FTBOT_MANIFEST" {seen}'})
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        versions.promote(session, working, project, 2, by="U")
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
        with session_scope(engine) as session:
            project = projects.get_project(session, "ticket-router")
            with pytest.raises(DeployHookError, match="500"):
                versions.promote(session, hooked, project, 1, by="U")
            assert versions.production(session, project) is None
            versions.promote(session, hooked, project, 1, by="U")
    finally:
        server.shutdown()
    assert [r["version"] for r in received] == [1, 1] and state(engine)[0] == 1


def test_slack_rollback_needs_on_call_and_every_attempt_is_audited(slack, emulator, engine, settings, bot):
    make_project_with_versions(engine, settings)
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        versions.promote(session, settings, project, 1, by="UALICE")
        versions.promote(session, settings, project, 2, by="UALICE")
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
    assert entries == [("UBOB", "rollback", False), ("UCAROL", "rollback", True)]


def test_version_statuses_are_the_documented_set():
    # Whether a version serves is the alias's alone; "production" and "retired" are derived from it.
    assert {s.value for s in VersionStatus} == {"candidate", "discarded"}
