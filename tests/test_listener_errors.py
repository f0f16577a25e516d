"""Errors never escape the audit: a deploy hook that does not speak HTTP is a refusal like any other,
and an exception in a listener is caught at one seam — logged, audited in the project's log and
answered with a reference. Over signed HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Iterator

import pytest

from runner.core import audit
from runner.core.db import session_scope
from runner.data import projects
from tests.registry_support import make_project_with_versions, move, post_summary, state
from tests.slack_client import buttons


class _NotHttp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"hello from something that is not a web server\r\n")


@pytest.fixture
def not_http() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NotHttp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/deploy"
    server.shutdown()
    server.server_close()


def entries(engine) -> list[tuple[str, str, str]]:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        return [
            (e.user_id, e.action, e.detail) for e in reversed(audit.entries(session, project_id=project.id))
        ]


def the_summary(emulator) -> dict:
    return emulator.wait_for(
        lambda: next((m for m in emulator.messages("CGENERAL") if m["text"].startswith("Evaluation")), None),
        what="the summary",
    )


def test_a_hook_answering_something_other_than_http_is_refused_told_and_audited(
    slack, emulator, engine, settings, not_http
):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    post_summary(engine, settings, 2)
    settings.ftbot_deploy_hook = not_http  # the running bot reads the same settings object
    assert slack.press(the_summary(emulator), "Promote v2", user="UALICE").status == 200
    told = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UALICE"), None), what="the answer"
    )
    assert "deploy hook failed" in told["text"] and "BadStatusLine" in told["text"]
    assert state(engine)[0] == 1
    manifest = json.loads((settings.ftbot_data_dir / "deploy" / "ticket-router.json").read_text())
    assert manifest["version"] == 1
    user, action, detail = entries(engine)[-1]
    assert (user, action) == ("UALICE", "promote") and detail.startswith("not done: The deploy hook failed")


def test_a_crafted_button_value_is_answered_logged_and_audited_at_the_seam(
    slack, emulator, engine, settings, caplog
):
    make_project_with_versions(engine, settings)
    move(engine, settings, "promote", 1, by="UALICE")
    post_summary(engine, settings, 2)
    crafted = the_summary(emulator)
    _block, element = buttons(crafted)["Promote v2"]
    element["value"] = json.dumps({"p": "ticket-router", "v": [3]})
    with caplog.at_level(logging.ERROR, logger="bot.listeners.middleware"):
        assert slack.press(crafted, "Promote v2", user="UBOB").status == 200
        told = emulator.wait_for(
            lambda: next((e for e in emulator.ephemerals() if e["user"] == "UBOB"), None), what="the answer"
        )
    reference = told["text"].split("`")[1]
    assert "Something went wrong" in told["text"] and len(reference) == 8
    failed = [r for r in caplog.records if r.getMessage() == "listener failed"]
    assert failed and failed[0].exc_info is not None and getattr(failed[0], "reference", None) == reference
    assert entries(engine)[-1] == ("UBOB", "error", f"failed: ValueError (reference {reference})")
    assert state(engine)[0] == 1

    # The owner finds it in the project's audit log.
    assert slack.slash("audit ticket-router", user="UALICE").status == 200
    listing = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["text"].startswith("Audit log")), None),
        what="the audit log",
    )
    assert reference in json.dumps(listing["blocks"])
