"""Rollback follows lineage, and buttons act only on the move they were drawn from: through signed
HTTP to the running bot and the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from runner.core.db import session_scope
from runner.data import projects
from runner.registry import versions
from tests.registry_support import make_project_with_versions, move, post_summary, state
from tests.slack_client import buttons
from tests.training_support import ROOT


def announcements(emulator, words: str) -> list[dict]:
    return [m for m in emulator.messages("CGENERAL") if words in m.get("text", "")]


def summary_of(emulator, number: int) -> dict:
    prefix = f"Evaluation of ticket-router v{number}:"
    return emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if m["text"].startswith(prefix)), None),
        what=f"the summary of v{number}",
    )


def history(engine) -> list[tuple[str, int | None, int | None, str]]:
    """(action, from, to, reason) of every move that changed production, oldest first."""
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        numbers = {v.id: v.number for v in versions.versions(session, project)}
        return [
            (str(d.action), numbers.get(d.previous_version_id), numbers.get(d.version_id), d.reason)
            for d in reversed(versions.history(session, project))
        ]


def on_call(emulator, settings) -> None:
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL", "UDAVE"])
    settings.ftbot_oncall = ("SONCALL",)  # the running bot reads the same settings object


def test_a_rollback_after_a_rollback_goes_further_back_never_to_the_bad_version(
    slack, emulator, engine, settings
):
    make_project_with_versions(engine, settings)
    for number in (1, 2, 3):
        move(engine, settings, "promote", number, by="UALICE")
    on_call(emulator, settings)

    # On-call A, then on-call B two seconds later, both type the rollback.
    assert slack.slash("rollback ticket-router broken", user="UCAROL").status == 200
    emulator.wait_for(lambda: announcements(emulator, "v3 → v2"), what="the first rollback")
    assert slack.slash("rollback ticket-router broken", user="UDAVE").status == 200
    second = emulator.wait_for(lambda: announcements(emulator, "UDAVE"), what="the second rollback")[0]

    assert "v2 → v1" in second["text"], second["text"]
    assert state(engine) == (1, {1: "production", 2: "rolled_back", 3: "rolled_back"})
    assert not announcements(emulator, "→ v3 is")  # v3 never came back
    assert [(a, f, t) for a, f, t, _ in history(engine)] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("rollback", 3, 2),
        ("rollback", 2, 1),
    ]
    manifest = json.loads((settings.ftbot_data_dir / "deploy" / "ticket-router.json").read_text())
    assert manifest["version"] == 1

    # A third rollback has nothing left that was not rolled back from: it refuses instead of
    # bringing back v3 or v2.
    assert slack.slash("rollback ticket-router", user="UCAROL").status == 200
    refusal = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if "Nothing to roll back to" in e["text"]],
        what="the refusal",
    )
    assert refusal and state(engine)[0] == 1


def test_an_old_rollback_button_does_nothing_and_the_history_names_the_button_pressed(
    slack, emulator, engine, settings
):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    on_call(emulator, settings)

    post_summary(engine, settings, 2)
    assert slack.press(summary_of(emulator, 2), "Promote v2", user="UALICE").status == 200
    v2_promoted = emulator.wait_for(lambda: announcements(emulator, "v1 → v2"), what="v2 promoted")[0]
    post_summary(engine, settings, 3)
    assert slack.press(summary_of(emulator, 3), "Promote v3", user="UALICE").status == 200
    v3_promoted = emulator.wait_for(lambda: announcements(emulator, "v2 → v3"), what="v3 promoted")[0]

    # Rollback pressed on v3's promotion announcement: recorded as that button, not as a summary.
    assert slack.press(v3_promoted, "Rollback v3", user="UCAROL").status == 200
    emulator.wait_for(lambda: announcements(emulator, "v3 → v2"), what="rolled back")
    assert state(engine)[0] == 2
    assert history(engine)[-1] == ("rollback", 3, 2, "from the promotion announcement of v3")
    assert history(engine)[1][3] == "from the evaluation summary of v2"

    # The "Rollback v2" button on v2's own announcement was drawn from an earlier move: production
    # is v2 again, but by a rollback, and that button must not roll it anywhere.
    assert slack.press(v2_promoted, "Rollback v2", user="UDAVE").status == 200
    stale = emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UDAVE"], what="the stale button answered"
    )
    assert "out of date" in stale[0]["text"] and "nothing changed" in stale[0]["text"]
    assert state(engine)[0] == 2 and len(history(engine)) == 4

    # The same for the summary's buttons, drawn before both moves.
    assert slack.press(summary_of(emulator, 2), "Promote v2", user="UALICE").status == 200
    emulator.wait_for(
        lambda: [e for e in emulator.ephemerals() if e["user"] == "UALICE" and "out of date" in e["text"]],
        what="the stale promote answered",
    )
    assert state(engine)[0] == 2 and len(history(engine)) == 4


def test_a_version_rolled_back_from_serves_again_only_by_name_and_confirmed(
    slack, emulator, engine, settings, database_url
):
    make_project_with_versions(engine, settings)
    for number in (1, 2):
        move(engine, settings, "promote", number, by="UALICE")
    on_call(emulator, settings)
    assert slack.slash("rollback ticket-router v1 latency doubled", user="UCAROL").status == 200
    emulator.wait_for(lambda: announcements(emulator, "v2 → v1"), what="rolled back")

    # Rolling "back" to v2 by name is refused with a way to promote it deliberately.
    assert slack.slash("rollback ticket-router v2", user="UDAVE").status == 200
    offer = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UDAVE"), None), what="the offer"
    )
    assert "v2 was rolled back by <@UCAROL>" in offer["text"] and "latency doubled" in offer["text"]
    _block, again = buttons(offer)["Promote v2 again"]
    assert "rolled back" in again["confirm"]["text"]["text"]
    assert state(engine)[0] == 1

    # The owner confirms: v2 serves again, and the history says why.
    offer["ts"] = offer.get("ts") or "1700000000.000200"
    assert slack.press(offer, "Promote v2 again", user="UALICE").status == 200
    emulator.wait_for(lambda: announcements(emulator, "v1 → v2"), what="promoted again")
    assert state(engine)[0] == 2
    assert history(engine)[-1][3] == "confirmed after a warning that v2 had been rolled back"

    # The command line asks too: without --again (and no terminal to ask on) it refuses.
    move(engine, settings, "rollback", 1, by="UCAROL")
    env = {**os.environ, "DATABASE_URL": database_url, "FTBOT_DATA_DIR": str(settings.ftbot_data_dir)}
    refused = subprocess.run(
        [sys.executable, "-m", "bot.cli", "promote", "ticket-router", "v2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 1 and "--again" in refused.stderr and "was rolled back" in refused.stderr
    assert state(engine)[0] == 1
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "promote", "ticket-router", "v2", "--again"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert state(engine)[0] == 2
