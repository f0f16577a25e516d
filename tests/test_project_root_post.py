"""A project and its thread: when Slack refuses the root message, the person hears why and what to
do, the project is kept and marked, and `/finetune repost` posts it once Slack lets it. Signed HTTP.
"""

from __future__ import annotations

import json

import pytest

from runner.core.db import session_scope
from runner.data import projects
from tests.test_datasets_slack import PROJECT_FORM
from tests.training_support import wait_until

QUIET = "CQUIET"


def said(emulator, key: str) -> str:
    """What the bot told the person through the response URL `key`, and in ephemerals."""
    through_url = [r.get("text", "") for r in emulator.responses(key)]
    return " ".join(through_url + [e["text"] for e in emulator.ephemerals(QUIET)])


def stored(engine, name: str = "ticket-router"):
    with session_scope(engine) as session:
        project = projects.get_project(session, name)
        return project.root_ts, project.root_error


def roots(emulator, channel: str) -> list[dict]:
    return [m for m in emulator.messages(channel) if m["text"].startswith("Dataset ticket-router")]


def test_a_channel_that_refuses_the_bot_keeps_the_project_marked_until_it_is_reposted(
    slack, emulator, engine
):
    emulator.add_channel(QUIET, "quiet", members=["UALICE", "UDAVE"])  # ftbot has not been invited
    assert slack.slash("new", channel=QUIET, response_key="new").status == 200
    view = emulator.wait_for(lambda: emulator.calls_to("views.open"), what="the form")[-1].args["view"]
    assert slack.submit(view, PROJECT_FORM).status == 200

    # The person hears why, through the command's response URL (ftbot may not post in the channel).
    emulator.wait_for(lambda: "/finetune repost ticket-router" in said(emulator, "new"), what="the advice")
    assert "invite me with `/invite @ftbot`" in said(emulator, "new")
    assert stored(engine) == (None, "not_in_channel") and roots(emulator, QUIET) == []

    # Reposting before the invitation says the same again; after it, the thread is posted.
    assert slack.slash("repost ticket-router", channel=QUIET, response_key="early").status == 200
    emulator.wait_for(lambda: "not_in_channel" in said(emulator, "early"), what="the second refusal")
    emulator.invite(QUIET, "UBOT")
    assert slack.slash("repost ticket-router", channel=QUIET, response_key="repost").status == 200
    emulator.wait_for(lambda: "Posted the thread" in said(emulator, "repost"), what="the confirmation")
    (root,) = roots(emulator, QUIET)
    assert stored(engine) == (root["ts"], None)

    # It is an ordinary project thread now, and a second repost changes nothing.
    slack.reply(QUIET, root["ts"], "my card was charged twice", "UDAVE")
    emulator.wait_for(
        lambda: "1 (1 awaiting" in json.dumps(roots(emulator, QUIET)[0]["blocks"]), what="tally"
    )
    assert slack.slash("repost ticket-router", channel=QUIET, response_key="again").status == 200
    emulator.wait_for(lambda: "already posted" in said(emulator, "again"), what="already posted")
    assert len(roots(emulator, QUIET)) == 1


@pytest.mark.parametrize(
    ("error", "advice"),
    [("invalid_blocks", "Slack refused the message's layout"), ("ratelimited", "rate-limiting")],
)
def test_slack_refusing_the_root_message_is_told_to_the_person_who_created_the_project(
    slack, emulator, engine, error, advice
):
    emulator.fail_next("chat.postMessage", error)
    assert slack.slash("new", channel="CDATA", response_key="new").status == 200
    view = emulator.wait_for(lambda: emulator.calls_to("views.open"), what="the form")[-1].args["view"]
    assert slack.submit(view, PROJECT_FORM).status == 200
    told = emulator.wait_for(
        lambda: next(
            (e for e in emulator.ephemerals("CDATA") if "could not post its thread" in e["text"]), None
        ),
        what="the ephemeral",
    )
    assert told["user"] == "UALICE" and advice in told["text"] and f"`{error}`" in told["text"]
    assert stored(engine) == (None, error)
    assert slack.slash("repost ticket-router", channel="CDATA").status == 200
    wait_until(lambda: stored(engine)[0] is not None, what="the reposted root")
    assert stored(engine) == (roots(emulator, "CDATA")[0]["ts"], None)
