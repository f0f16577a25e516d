"""Deploys are recorded, reconciled transactions: the manifest, the database and what the deploy hook
was last told agree after a crash during the hook, a commit that fails, or a last step that never
ran; every attempt is audited and the channel is told. Through the CLI and signed HTTP, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runner.core import audit
from runner.core.db import session_scope
from runner.data import projects
from runner.registry import versions
from tests.conftest import BOT_TOKEN
from tests.faults import fail_updates, repair
from tests.registry_support import make_project_with_versions, move, post_summary, state
from tests.training_support import ROOT, wait_until


def hook_script(tmp_path: Path, *, hold: bool = False) -> tuple[str, Path]:
    """A deploy hook that appends "<version> <action>" to a file; with `hold`, it then waits until a
    file named ``go`` appears (so the test can kill whoever called it meanwhile)."""
    told = tmp_path / "told.log"
    script = tmp_path / "hook.sh"
    wait = f'while [ ! -f "{tmp_path}/go" ]; do sleep 0.05; done\n' if hold else ""
    script.write_text(f'#!/bin/sh\necho "$FTBOT_VERSION $FTBOT_ACTION" >> "{told}"\n{wait}')
    script.chmod(0o755)
    return str(script), told


def told(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cli_env(settings, database_url: str, emulator, hook: str) -> dict[str, str]:
    drop = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "DATABASE_URL")
    return {
        **{k: v for k, v in os.environ.items() if k not in drop},
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.redis_url,
        "FTBOT_DATA_DIR": str(settings.ftbot_data_dir),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": emulator.base_url,
        "FTBOT_DEPLOY_HOOK": hook,
    }


def ftbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def deploy_files(settings) -> list[str]:
    return sorted(p.name for p in (settings.ftbot_data_dir / "deploy").iterdir())


def manifest_version(settings) -> int | None:
    return json.loads((settings.ftbot_data_dir / "deploy" / "ticket-router.json").read_text())["version"]


def moves(engine) -> list[tuple[str, int | None, str]]:
    """(action, to, state) of every attempt, oldest first."""
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        numbers = {v.id: v.number for v in versions.versions(session, project)}
        return [
            (str(d.action), numbers.get(d.version_id), str(d.state))
            for d in reversed(versions.history(session, project, attempts=True))
        ]


def audit_rows(engine) -> list[tuple[str, str, str]]:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        return [
            (e.user_id, e.action, e.detail) for e in reversed(audit.entries(session, project_id=project.id))
        ]


def pending(engine) -> int | None:
    with session_scope(engine) as session:
        return versions.alias(session, projects.get_project(session, "ticket-router")).pending_id


def channel_says(emulator, words: str) -> list[dict]:
    return [m for m in emulator.messages("CGENERAL") if words in m.get("text", "")]


def test_a_deploy_killed_during_the_hook_is_reverted_told_audited_and_cleaned_up(
    engine, settings, emulator, database_url, tmp_path
):
    make_project_with_versions(engine, settings)
    hook, told_file = hook_script(tmp_path, hold=True)
    (tmp_path / "go").touch()
    move(engine, settings.model_copy(update={"ftbot_deploy_hook": hook}), "promote", 1, by="UALICE")
    (tmp_path / "go").unlink()
    env = cli_env(settings, database_url, emulator, hook)

    promoting = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "promote", "ticket-router", "v2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: told(told_file) == ["1 promote", "2 promote"], what="the hook told v2")
        promoting.send_signal(signal.SIGKILL)  # the process dies while the hook runs
        promoting.communicate(timeout=60)
    finally:
        promoting.kill()
        (tmp_path / "go").touch()  # the serving system goes on: it was told v2

    # Half-way: recorded as pending, production still v1, the staged manifest on disk.
    assert state(engine)[0] == 1 and pending(engine) is not None
    assert moves(engine)[-1] == ("promote", 2, "pending")
    assert manifest_version(settings) == 1 and len(deploy_files(settings)) == 2

    done = ftbot(env, "reconcile")
    assert done.returncode == 0, done.stderr
    assert "reverted" in done.stdout
    assert told(told_file)[-1] == "1 revert"  # the hook, the manifest and the database agree on v1
    assert state(engine)[0] == 1 and manifest_version(settings) == 1 and pending(engine) is None
    assert deploy_files(settings) == ["ticket-router.json"]  # no stray staged manifest
    assert moves(engine)[-1] == ("promote", 2, "reverted")
    user, action, detail = audit_rows(engine)[-1]
    assert action == "promote" and user.startswith("cli:") and "not done: interrupted" in detail
    said = channel_says(emulator, "was interrupted before it was committed")
    assert len(said) == 1 and "v1 is in production" in said[0]["text"]

    # Nothing is left to do: a second pass changes nothing and says nothing.
    again = ftbot(env, "reconcile")
    assert again.returncode == 0 and "0 deployment(s) settled" in again.stdout
    assert len(channel_says(emulator, "interrupted")) == 1


def test_a_commit_that_fails_after_the_hook_agreed_tells_the_hook_again(
    slack, emulator, engine, settings, tmp_path
):
    make_project_with_versions(engine, settings)
    hook, told_file = hook_script(tmp_path)
    settings.ftbot_deploy_hook = hook  # the running bot reads the same settings object
    move(engine, settings, "promote", 1, by="UALICE")
    post_summary(engine, settings, 2)
    summary = emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if m["text"].startswith("Evaluation")), None),
        what="the summary",
    )
    fail_updates(engine, "production_alias", "version_id")
    try:
        assert slack.press(summary, "Promote v2", user="UALICE").status == 200
        answer = emulator.wait_for(
            lambda: next((e for e in emulator.ephemerals() if e["user"] == "UALICE"), None), what="the answer"
        )
    finally:
        repair(engine, "production_alias")
    assert "database failed" in answer["text"] and "stays v1" in answer["text"]
    assert "told again" in answer["text"]
    assert told(told_file) == ["1 promote", "2 promote", "1 revert"]
    assert state(engine)[0] == 1 and manifest_version(settings) == 1 and pending(engine) is None
    assert deploy_files(settings) == ["ticket-router.json"]
    assert moves(engine)[-1] == ("promote", 2, "reverted")
    assert audit_rows(engine)[-1][:2] == ("UALICE", "promote")
    assert not channel_says(emulator, "promoted ticket-router: v1 → v2")

    # The database is back: the same button works.
    assert slack.press(summary, "Promote v2", user="UALICE").status == 200
    emulator.wait_for(lambda: channel_says(emulator, "v1 → v2"), what="promoted")
    assert state(engine)[0] == 2 and manifest_version(settings) == 2 and told(told_file)[-1] == "2 promote"


def test_a_committed_move_whose_last_step_failed_is_finished_by_the_reconciler(
    engine, settings, emulator, database_url, tmp_path
):
    make_project_with_versions(engine, settings)
    hook, told_file = hook_script(tmp_path)
    env = cli_env(settings, database_url, emulator, hook)
    assert ftbot(env, "promote", "ticket-router", "v1").returncode == 0
    fail_updates(engine, "deployment", "state", "NEW.state = 'done'")
    try:
        promoted = ftbot(env, "promote", "ticket-router", "v2")
    finally:
        repair(engine, "deployment")
    assert promoted.returncode == 0, promoted.stderr  # the move itself committed
    assert state(engine)[0] == 2 and manifest_version(settings) == 2 and told(told_file)[-1] == "2 promote"
    assert moves(engine)[-1] == ("promote", 2, "committed") and pending(engine) is not None

    rolled = ftbot(env, "rollback", "ticket-router")  # production stays locked until it is settled
    assert rolled.returncode == 1 and "being deployed right now" in rolled.stderr

    done = ftbot(env, "reconcile")
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr
    assert moves(engine)[-1] == ("promote", 2, "done") and pending(engine) is None
    assert manifest_version(settings) == 2 and told(told_file)[-1] == "2 promote"
    assert audit_rows(engine)[-1][:2] == ("reconciler", "promote")
    assert channel_says(emulator, "it is now complete: v2 is in production")
    assert ftbot(env, "rollback", "ticket-router").returncode == 0
    assert state(engine)[0] == 1


def test_a_manifest_that_disagrees_with_the_database_is_redeployed(
    engine, settings, emulator, database_url, tmp_path
):
    make_project_with_versions(engine, settings)
    hook, told_file = hook_script(tmp_path)
    env = cli_env(settings, database_url, emulator, hook)
    for number in (1, 2):
        assert ftbot(env, "promote", "ticket-router", f"v{number}").returncode == 0
    # What an earlier release could leave behind: the manifest (and the serving system) on v3,
    # the database on v2.
    manifest = settings.ftbot_data_dir / "deploy" / "ticket-router.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 3, "revision": 3}))
    (manifest.parent / ".ticket-router.abc123.json").write_text("{}")
    os.utime(manifest.parent / ".ticket-router.abc123.json", (0, 0))

    done = ftbot(env, "reconcile")
    assert done.returncode == 0 and "redeployed" in done.stdout, done.stderr
    assert told(told_file)[-1] == "2 reconcile" and manifest_version(settings) == 2
    assert deploy_files(settings) == ["ticket-router.json"]
    assert audit_rows(engine)[-1][:2] == ("reconciler", "reconcile")
    assert channel_says(emulator, "named v3 while the registry says v2")
