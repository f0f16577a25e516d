"""Evaluation summaries, promote and rollback from Slack, with a real worker on real Redis."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest
from sqlmodel import select

from runner.core import audit
from runner.core.db import session_scope
from runner.core.models import ModelVersion
from runner.data import projects
from runner.registry import versions
from tests.slack_client import buttons
from tests.training_support import FAST, run_worker_burst, seed_project, train_confirmed


def summary(emulator: Any, number: int) -> dict[str, Any] | None:
    prefix = f"Evaluation of ticket-router v{number}:"
    return next((m for m in emulator.messages("CGENERAL") if m.get("text", "").startswith(prefix)), None)


def announcement(emulator: Any, words: str) -> dict[str, Any] | None:
    return next((m for m in emulator.messages("CGENERAL") if words in m.get("text", "")), None)


def production(engine) -> int | None:
    with session_scope(engine) as session:
        current = versions.production(session, projects.get_project(session, "ticket-router"))
        return current.number if current else None


def train_and_evaluate(slack, emulator, settings, database_url, number: int, options: list[str]) -> dict:
    train_confirmed(slack, emulator, "ticket-router " + " ".join(options))
    emulator.wait_for(
        lambda: (
            sum(m.get("text", "").startswith("Training run") for m in emulator.messages("CGENERAL")) >= number
        ),
        what="queued",
    )
    run_worker_burst(settings, database_url, emulator)
    return emulator.wait_for(lambda: summary(emulator, number), what=f"summary of v{number}")


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_train_evaluate_promote_and_roll_back_from_chat(
    slack, emulator, engine, training_settings, database_url
):
    seed_project(engine, n=120, emulator=emulator)
    emulator.add_usergroup("SONCALL", "oncall", ["UCAROL", "UDAVE"])
    training_settings.ftbot_oncall = ("SONCALL",)

    first = train_and_evaluate(slack, emulator, training_settings, database_url, 1, FAST)
    assert "Promote v1" in buttons(first) and "Rollback" not in " ".join(buttons(first))
    shown = json.dumps(first["blocks"], ensure_ascii=False)
    for row in ("Base + instructions, zero-shot", "Base + instructions, 2 examples per label", "TF-IDF"):
        assert row in shown
    assert not re.search(r"\d\.\d{3,}", shown + first["text"])  # numbers rounded for people
    assert [f.title for f in emulator.uploaded_files()] == ["ticket-router v1 evaluation"]
    assert emulator.uploaded_files()[0].content.startswith(b"\x89PNG")
    with session_scope(engine) as session:
        v1 = session.exec(select(ModelVersion).where(ModelVersion.number == 1)).one()
        report = v1.evaluation
    assert report["n_examples"] >= 10 and report["systems"]["production"] is None
    systems = report["systems"]
    assert systems["candidate"]["ci"][0] <= systems["candidate"]["headline"]
    assert {"base", "base_k_shot", "classical"} <= {name for name, s in systems.items() if s}
    assert report["best_baseline"] in ("base", "base_k_shot")
    assert systems[report["best_baseline"]]["headline"] == max(
        systems[n]["headline"] for n in ("base", "base_k_shot")
    )
    assert 0.0 <= systems["candidate"]["unparsable"] <= 1.0

    slack.press(first, "Promote v1", user="UALICE")
    emulator.wait_for(lambda: announcement(emulator, "promoted ticket-router"), what="promotion")
    assert production(engine) == 1

    second = train_and_evaluate(slack, emulator, training_settings, database_url, 2, [*FAST, "seed=1"])
    assert {"Promote v2", "Rollback v1", "Discard v2"} <= set(buttons(second))
    assert "Production v1" in json.dumps(
        second["blocks"]
    )  # production's score is shown beside the candidate's
    with session_scope(engine) as session:
        v2 = session.exec(select(ModelVersion).where(ModelVersion.number == 2)).one()
        again = v2.evaluation
        assert v2.snapshot_id == v1.snapshot_id
    # Same snapshot, same base model: the baselines' answers are v1's, not computed again.
    assert again["baselines_key"] == report["baselines_key"]
    for name in ("base", "base_k_shot", "classical"):
        assert again["systems"][name]["reused_from"] == 1
        assert again["systems"][name]["predicted"] == systems[name]["predicted"]
        assert again["systems"][name]["ci"] == systems[name]["ci"]
    assert "reused_from" not in systems["base"] and "reused_from" not in again["systems"]["candidate"]

    # a failing deploy hook: production stays on v1 and the presser is told why
    training_settings.ftbot_deploy_hook = "echo inference server refused >&2; exit 3"
    slack.press(second, "Promote v2", user="UALICE")
    refusal = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if "deploy hook" in e["text"]), None),
        what="hook failure",
    )
    assert "inference server refused" in refusal["text"] and production(engine) == 1
    training_settings.ftbot_deploy_hook = None

    slack.press(second, "Promote v2", user="UALICE")
    promoted = emulator.wait_for(lambda: announcement(emulator, "v1 → v2"), what="v2 promotion")
    assert production(engine) == 2

    # someone not on call presses Rollback: refused and audited
    slack.press(promoted, "Rollback v2", user="UBOB")
    emulator.wait_for(
        lambda: any(e["user"] == "UBOB" and "on-call" in e["text"] for e in emulator.ephemerals()),
        what="refusal",
    )
    assert production(engine) == 2

    # two on-call engineers press Rollback at the same moment: one rollback
    barrier = threading.Barrier(2)

    def press(user: str) -> None:
        barrier.wait()
        slack.press(promoted, "Rollback v2", user=user)

    threads = [threading.Thread(target=press, args=(u,)) for u in ("UCAROL", "UDAVE")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emulator.wait_for(lambda: announcement(emulator, "rolled back ticket-router"), what="rollback announced")
    emulator.wait_for(
        lambda: any(
            words in e["text"]
            for e in emulator.ephemerals()
            for words in ("out of date", "changed by someone else", "being deployed right now")
        ),
        what="the second press explained",
    )
    assert production(engine) == 1
    rollbacks = [m for m in emulator.messages("CGENERAL") if "rolled back" in m.get("text", "")]
    assert len(rollbacks) == 1 and "v2 → v1" in rollbacks[0]["text"]

    manifest = json.loads((training_settings.ftbot_data_dir / "deploy" / "ticket-router.json").read_text())
    assert manifest["version"] == 1 and manifest["action"] == "rollback"
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        entries = [
            (e.user_id, e.action, e.allowed) for e in reversed(audit.entries(session, project_id=project.id))
        ]
    assert ("UBOB", "rollback", False) in entries
    assert (
        sum(1 for user, action, ok in entries if action == "rollback" and ok) == 2
    )  # both on-call were allowed
    assert [a for a in entries if a[1] == "promote"] == [("UALICE", "promote", True)] * 3
