"""Settling conflicts from Slack, and Block Kit at the limits a project allows, through signed HTTP.

* Settle buttons act only while the example is in conflict; the list is replaced in place.
* A long list comes a page at a time (``Show more``); many labels come as a select menu.
* What people typed is escaped: ``<!channel>`` in an example shows as typed and pings nobody.
* The project form refuses more labels or reviewers than Slack can show, saying so.
"""

from __future__ import annotations

import json
from typing import Any

from runner.core import audit
from runner.core.db import session_scope
from runner.data import examples, projects
from runner.slack.payloads import MAX_CONFLICTS_SHOWN
from tests.slack_client import buttons
from tests.test_datasets_slack import CHANNEL, EMOJI, PROJECT_FORM, create_project, open_modal
from tests.training_support import wait_until


def conflict(slack, root, text: str, first: str = "billing", second: str = "technical") -> dict[str, Any]:
    """A reply two reviewers label differently."""
    message = slack.reply(CHANNEL, root["ts"], text, "UDAVE")
    slack.react(CHANNEL, message["ts"], EMOJI[first], "UALICE")
    slack.react(CHANNEL, message["ts"], EMOJI[second], "UBOB")
    return message


def open_conflicts(engine, emulator, n: int) -> None:
    def count() -> int:
        from runner.data import gates

        with session_scope(engine) as session:
            return len(gates.project_stats(session, projects.get_project(session, "ticket-router")).conflicts)

    wait_until(lambda: count() == n, what=f"{n} open conflicts")


def listing(slack, emulator, user: str = "UALICE") -> dict[str, Any]:
    before = len(emulator.ephemerals(CHANNEL))
    assert slack.slash("conflicts ticket-router", channel=CHANNEL, user=user).status == 200
    shown = emulator.wait_for(lambda: emulator.ephemerals(CHANNEL)[before:], what="the conflicts")[-1]
    shown["ts"] = "1700000000.000900"  # an ephemeral message's ts, as its container names it
    return shown


def replaced(emulator, key: str) -> dict[str, Any]:
    answer = emulator.wait_for(lambda: emulator.responses(key), what=f"the answer to {key}")[-1]
    assert answer["replace_original"] is True
    return {**answer, "ts": "1700000000.000900"}


def final_label(engine, message: dict[str, Any]) -> str | None:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        found = examples.find_example(session, project.id, CHANNEL, message["ts"])
        return found.final_label if found else None


def settle_buttons(shown: dict[str, Any], message_text: str) -> dict[str, Any]:
    """The part of the list that is about one example (its quote and its buttons)."""
    blocks = shown["blocks"]
    for i, block in enumerate(blocks):
        if block.get("type") == "section" and message_text in block["text"]["text"]:
            return {**shown, "blocks": [block, blocks[i + 1]]}
    raise AssertionError(f"{message_text!r} is not in the list")


def test_settle_buttons_act_only_while_the_example_is_in_conflict(slack, emulator, engine):
    root = create_project(slack, emulator)
    first = conflict(slack, root, "refund the double charge")
    second = conflict(slack, root, "the invoice page crashes")
    open_conflicts(engine, emulator, 2)
    shown = listing(slack, emulator)

    # The owner settles the first: the list is replaced in place by what is left.
    slack.press(
        settle_buttons(shown, "double charge"), "billing :one:", channel=CHANNEL, response_key="settle-1"
    )
    after = replaced(emulator, "settle-1")
    assert "1 open conflicts" in after["text"] and "double charge" not in json.dumps(
        after["blocks"], ensure_ascii=False
    )
    assert final_label(engine, first) == "billing"

    # The old list's buttons for it settle nothing now.
    old = settle_buttons(shown, "double charge")
    slack.press(old, "technical :two:", channel=CHANNEL, response_key="settle-again")
    emulator.wait_for(
        lambda: any("already settled" in e["text"] for e in emulator.ephemerals(CHANNEL)), what="the refusal"
    )
    assert final_label(engine, first) == "billing"
    assert "double charge" not in json.dumps(replaced(emulator, "settle-again")["blocks"])

    # The second's reviewers come to agree: its old buttons do nothing either.
    slack.react(CHANNEL, second["ts"], EMOJI["technical"], "UALICE", added=False)
    slack.react(CHANNEL, second["ts"], EMOJI["technical"], "UALICE")
    slack.react(CHANNEL, second["ts"], EMOJI["billing"], "UALICE", added=False)
    open_conflicts(engine, emulator, 0)
    slack.press(settle_buttons(shown, "invoice page"), "billing :one:", channel=CHANNEL, response_key="late")
    emulator.wait_for(
        lambda: any("no longer disagree" in e["text"] for e in emulator.ephemerals(CHANNEL)), what="refusal"
    )
    assert final_label(engine, second) is None
    assert "No open conflicts" in json.dumps(replaced(emulator, "late")["blocks"])
    with session_scope(engine) as session:
        log = audit.entries(session, project_id=projects.get_project(session, "ticket-router").id)
    settled, refused = list(reversed(log))[:2]  # a refused settle is audited with the reason
    assert "already settled" not in settled.detail and "already settled" in refused.detail


def test_a_long_list_of_conflicts_pages_with_show_more(slack, emulator, engine):
    root = create_project(slack, emulator)
    total = MAX_CONFLICTS_SHOWN + 5
    for n in range(total):
        conflict(slack, root, f"ticket {chr(ord('a') + n)} {'q' * n} needs a queue")
    open_conflicts(engine, emulator, total)
    shown = listing(slack, emulator)
    assert f"{total} open conflicts" in shown["text"]
    assert (
        sum(1 for b in shown["blocks"] if b.get("block_id", "").startswith("conflict:"))
        == MAX_CONFLICTS_SHOWN
    )
    slack.press(shown, "Show more", channel=CHANNEL, response_key="page-2")
    second = replaced(emulator, "page-2")
    assert f"(showing {MAX_CONFLICTS_SHOWN + 1}–{total})" in json.dumps(second["blocks"], ensure_ascii=False)
    assert sum(1 for b in second["blocks"] if b.get("block_id", "").startswith("conflict:")) == 5
    assert "Show more" not in buttons(second)
    # Settling from the second page keeps the person on it.
    last = settle_buttons(second, "ticket " + chr(ord("a") + total - 1))
    slack.press(last, "shipping :four:", channel=CHANNEL, response_key="settle-on-2")
    after = replaced(emulator, "settle-on-2")
    assert f"(showing {MAX_CONFLICTS_SHOWN + 1}–{total - 1})" in json.dumps(
        after["blocks"], ensure_ascii=False
    )


def test_many_labels_are_settled_from_a_menu(slack, emulator, engine):
    labels = [
        f"queue-{chr(ord('a') + i)} :{emoji}:"
        for i, emoji in enumerate(["apple", "pear", "fish", "cat", "dog", "owl", "bee"])
    ]
    view = open_modal(slack, emulator)
    assert slack.submit(view, {**PROJECT_FORM, "labels": "\n".join(labels)}).status == 200
    root = emulator.wait_for(
        lambda: next(
            (m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset ticket-router")), None
        ),
        what="root",
    )
    message = slack.reply(CHANNEL, root["ts"], "route me somewhere", "UDAVE")
    slack.react(CHANNEL, message["ts"], "apple", "UALICE")
    slack.react(CHANNEL, message["ts"], "bee", "UBOB")
    open_conflicts(engine, emulator, 1)
    shown = listing(slack, emulator)
    menu_block = next(b for b in shown["blocks"] if b.get("block_id", "").startswith("conflict:"))
    menu = menu_block["elements"][0]
    assert menu["type"] == "static_select" and [o["value"] for o in menu["options"]] == [
        label.split()[0] for label in labels
    ]
    slack.choose(shown, menu_block["block_id"], "queue-g", channel=CHANNEL, response_key="menu")
    assert "No open conflicts" in json.dumps(replaced(emulator, "menu")["blocks"])
    assert final_label(engine, message) == "queue-g"


def test_what_people_typed_is_escaped(slack, emulator, engine):
    view = open_modal(slack, emulator)
    labels = "billing\n<!here> urgent :rotating_light:"  # typed into the form as it stands
    assert slack.submit(view, {**PROJECT_FORM, "labels": labels}).status == 200
    root = emulator.wait_for(
        lambda: next(
            (m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset ticket-router")), None
        ),
        what="root",
    )
    assert ":rotating_light: &lt;!here&gt; urgent" in json.dumps(root["blocks"], ensure_ascii=False)
    message = slack.reply(CHANNEL, root["ts"], "refund me &amp; my team", "UDAVE")
    slack.react(CHANNEL, message["ts"], "one", "UALICE")
    slack.react(CHANNEL, message["ts"], "rotating_light", "UBOB")
    open_conflicts(engine, emulator, 1)
    shown = listing(slack, emulator)
    text = " ".join(mrkdwn_texts(shown))
    assert "&lt;!here&gt; urgent ×1" in text and "refund me &amp; my team" in text
    for message in (shown, root_now(emulator)):  # plain_text (buttons, menus) shows < as typed
        assert not [t for t in mrkdwn_texts(message) if "<!here" in t]


def root_now(emulator) -> dict[str, Any]:
    return next(m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset ticket-router"))


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """The fallback text and every mrkdwn text object of a message: where Slack reads mentions."""
    found = [message.get("text", "")]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "mrkdwn":
                found.append(value["text"])
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(message.get("blocks", []))
    return found


def test_the_project_form_refuses_more_labels_or_reviewers_than_slack_can_show(slack, emulator):
    view = open_modal(slack, emulator)
    too_many = "\n".join(f"label{chr(ord('a') + i // 26)}{chr(ord('a') + i % 26)} :e{i}:" for i in range(51))
    long_label = "x" * 65 + " :long:"
    crowd = [f"U{i:09d}" for i in range(101)]
    for values, field, says in (
        ({"labels": too_many}, "labels", "Up to 50 labels"),
        ({"labels": "billing\n" + long_label}, "labels", "Keep labels to 64 characters"),
        ({"labels": "billing :" + "e" * 41 + ":\ntechnical"}, "labels", "Keep emoji names to 40 characters"),
        ({"reviewers": crowd}, "reviewers", "Up to 100 reviewers"),
    ):
        reply = slack.submit(view, {**PROJECT_FORM, **values})
        errors = reply.json()["errors"]
        assert says in errors[field], errors
    assert not [m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset")]


def test_the_largest_project_the_form_allows_is_posted_and_shown_within_slacks_limits(
    slack, emulator, engine
):
    labels = [f"{chr(ord('a') + i // 26)}{chr(ord('a') + i % 26)}".ljust(64, "l") for i in range(50)]
    emoji = [f"e{chr(ord('a') + i // 26)}{chr(ord('a') + i % 26)}".ljust(40, "e") for i in range(50)]
    reviewers = ["UALICE", "UBOB", *(f"W{i:09d}" for i in range(98))]
    view = open_modal(slack, emulator)
    form = {
        **PROJECT_FORM,
        "name": "n" * 63,
        "labels": "\n".join(f"{label} :{e}:" for label, e in zip(labels, emoji, strict=True)),
        "reviewers": reviewers,
    }
    assert slack.submit(view, form).status == 200
    root = emulator.wait_for(
        lambda: next((m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset nnn")), None),
        what="the root message (the emulator refuses blocks beyond Slack's limits)",
    )
    text = json.dumps(root["blocks"], ensure_ascii=False)
    assert all(f":{e}: {label}" in text for label, e in zip(labels, emoji, strict=True)), "every label shown"
    assert "<@W000000097>" in text  # the hundredth reviewer

    message = slack.reply(CHANNEL, root["ts"], "which queue?", "UDAVE")
    slack.react(CHANNEL, message["ts"], emoji[0], "UALICE")
    slack.react(CHANNEL, message["ts"], emoji[49], "UBOB")

    def conflicts() -> int:
        from runner.data import gates

        with session_scope(engine) as session:
            return len(gates.project_stats(session, projects.get_project(session, "n" * 63)).conflicts)

    wait_until(lambda: conflicts() == 1, what="the conflict")
    before = len(emulator.ephemerals(CHANNEL))
    assert slack.slash(f"conflicts {'n' * 63}", channel=CHANNEL).status == 200
    shown = emulator.wait_for(lambda: emulator.ephemerals(CHANNEL)[before:], what="the conflicts")[-1]
    menu = next(b for b in shown["blocks"] if b.get("block_id", "").startswith("conflict:"))["elements"][0]
    assert len(menu["options"]) == 50 and all(len(o["text"]["text"]) <= 75 for o in menu["options"])
    assert slack.slash(f"status {'n' * 63}", channel=CHANNEL).status == 200
    emulator.wait_for(lambda: len(emulator.ephemerals(CHANNEL)) == before + 2, what="the status")
