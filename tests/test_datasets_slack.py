"""Dataset projects end to end through Slack: modal, thread replies, reactions, conflicts, snapshots."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from runner.core import audit
from runner.core.db import session_scope
from runner.data import examples, exporting, gates, projects, snapshots
from runner.data.split import Split

CHANNEL = "CDATA"
LABELS = ["billing", "technical", "account", "shipping"]
EMOJI = {"billing": "one", "technical": "two", "account": "three", "shipping": "four"}
PHRASES = {
    "billing": [
        "I was charged twice for invoice {n}",
        "refund the extra payment on order {n}",
        "my card was billed {n} dollars too much",
    ],
    "technical": [
        "the app crashes when I open report {n}",
        "error 500 on the dashboard page {n}",
        "sync stopped working after update {n}",
    ],
    "account": [
        "I cannot log in to account {n}",
        "please reset the password for user {n}",
        "how do I change the email on profile {n}",
    ],
    "shipping": [
        "parcel {n} has not arrived yet",
        "tracking number {n} shows no movement",
        "the box for order {n} came damaged",
    ],
}


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"], ensure_ascii=False)


def ticket(label: str, n: int) -> str:
    phrase = PHRASES[label][n % 3]
    return phrase.format(n=1000 + n * 7)


def open_modal(slack, emulator) -> dict[str, Any]:
    assert slack.slash("new", channel=CHANNEL).status == 200
    call = emulator.wait_for(lambda: emulator.calls_to("views.open"), what="views.open")[-1]
    return call.args["view"]


PROJECT_FORM = {
    "name": "ticket-router",
    "task_type": "classification",
    "labels": "\n".join(LABELS),
    "reviewers": ["UALICE", "UBOB", "UCAROL"],
    "min_per_label": "5",
    "agreement_threshold": "0.6",
    "instructions": "Route the support ticket to one queue: billing, technical, account or shipping.",
}


def create_project(slack, emulator) -> dict[str, Any]:
    view = open_modal(slack, emulator)
    reply = slack.submit(view, PROJECT_FORM)
    assert reply.status == 200 and not reply.body, reply.body
    return emulator.wait_for(
        lambda: next(
            (m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset ticket-router")), None
        ),
        what="the project's root message",
    )


def root_message(emulator) -> dict[str, Any]:
    return next(m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset ticket-router"))


def status_text(slack, emulator, user: str = "UALICE") -> str:
    before = len(emulator.ephemerals(CHANNEL))
    assert slack.slash("status ticket-router", channel=CHANNEL, user=user).status == 200
    note = emulator.wait_for(lambda: emulator.ephemerals(CHANNEL)[before:], what="status")[-1]
    return blocks_text(note)


def test_the_modal_refuses_bad_input_field_by_field(slack, emulator):
    view = open_modal(slack, emulator)
    reply = slack.submit(view, {**PROJECT_FORM, "name": "Bad Name!", "labels": "only-one", "reviewers": []})
    body = reply.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"name", "labels", "reviewers"}
    assert not [m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset")]


def test_dataset_built_in_a_thread_with_reactions(slack, emulator, engine, settings, tmp_path):
    root = create_project(slack, emulator)
    assert ":one: billing" in blocks_text(root)  # the legend, :one: … in the order given

    # 32 examples, 8 per label, as replies in the project thread
    started = time.monotonic()
    truth: dict[str, str] = {}
    messages: dict[str, dict[str, Any]] = {}
    for n in range(8):
        for label in LABELS:
            message = slack.reply(CHANNEL, root["ts"], ticket(label, n), "UDAVE")
            truth[message["ts"]] = label
            messages[message["ts"]] = message
    emulator.wait_for(lambda: "32 (" in blocks_text(root_message(emulator)), what="tally of 32 examples")

    # Three reviewers. Alice and Bob always vote the truth; Carol disagrees on three examples
    # (2–1 majorities, still agreed) and one example gets three different labels (a conflict).
    ordered = list(truth)
    carol_wrong = {ordered[0]: "technical", ordered[5]: "account", ordered[10]: "billing"}
    three_way = ordered[3]  # truth "shipping": Alice shipping, Bob billing, Carol technical
    votes: dict[str, dict[str, str]] = {}
    for ts, label in truth.items():
        votes[ts] = {"UALICE": label, "UBOB": label, "UCAROL": carol_wrong.get(ts, label)}
    votes[three_way] = {"UALICE": "shipping", "UBOB": "billing", "UCAROL": "technical"}
    for ts, by_reviewer in votes.items():
        for reviewer, label in by_reviewer.items():
            assert slack.react(CHANNEL, ts, EMOJI[label], reviewer).status == 200

    # noise that must not count: an outsider (hinted once), an emoji outside the legend,
    # a reaction on an unrelated message, the bot's own reaction, a redelivered event
    slack.react(CHANNEL, ordered[1], "one", "UERIN")
    slack.react(CHANNEL, ordered[2], "two", "UERIN")
    slack.react(CHANNEL, ordered[1], "tada", "UALICE")
    unrelated = emulator.post_user_message(CHANNEL, "lunch?", "UDAVE")
    slack.react(CHANNEL, unrelated["ts"], "one", "UALICE")
    slack.react(CHANNEL, ordered[1], "one", "UBOT")
    again = EMOJI[truth[ordered[6]]]  # Bob's own vote, delivered again: same event id, then a new one
    slack.react(CHANNEL, ordered[6], again, "UBOB", event_id="Ev0REDELIVERED")
    slack.react(CHANNEL, ordered[6], again, "UBOB", event_id="Ev0REDELIVERED")
    slack.react(CHANNEL, ordered[6], again, "UBOB")

    # Krippendorff's alpha (nominal), by hand. 32 units × 3 values: n = 96.
    # Disagreement: a 2–1 unit puts 1/(3−1) on each of its 4 off-diagonal ordered pairs → 2;
    # the 3-way unit has 6 off-diagonal pairs × 1/2 → 3. D_o = (3·2 + 3) / 96 = 9/96.
    # Value totals n_c: every vote counted once across the 96 values.
    n_c = Counter(label for by_reviewer in votes.values() for label in by_reviewer.values())
    assert sum(n_c.values()) == 96
    d_e = (96**2 - sum(v * v for v in n_c.values())) / (96 * 95)
    alpha = 1 - (9 / 96) / d_e
    expected = f"{alpha:.2f}"

    def settled() -> bool:
        with session_scope(engine) as session:
            stats = gates.project_stats(session, projects.get_project(session, "ticket-router"))
        return stats.agreement.coefficient is not None and f"{stats.agreement.coefficient:.2f}" == expected

    emulator.wait_for(settled, what=f"agreement {expected}")
    emulator.wait_for(lambda: f"α {expected}" in blocks_text(root_message(emulator)), what="tally agreement")
    tally = blocks_text(root_message(emulator))
    assert "billing: 8" in tally and "shipping: 7" in tally  # the 3-way example has no consensus
    assert "*Conflicts*\\n1" in tally

    # the throttle: at most one tally update per interval (however slow this machine is), far fewer
    # than the 140 changes when the interval is short, and the last change is shown
    updates = [c for c in emulator.calls_to("chat.update") if c.args.get("ts") == root["ts"]]
    assert len(updates) <= (time.monotonic() - started) / settings.ftbot_tally_interval + 2, len(updates)
    assert len(updates) < 140

    # the outsider got exactly one hint; the bot marked the conflict with :warning:
    hints = [e for e in emulator.ephemerals(CHANNEL) if e["user"] == "UERIN"]
    assert len(hints) == 1 and "reviewers" in hints[0]["text"]
    warnings = [c for c in emulator.calls_to("reactions.add") if c.args.get("name") == "warning"]
    assert [c.args["timestamp"] for c in warnings] == [three_way]

    # status shows the gates with value and threshold
    status = status_text(slack, emulator)
    assert f"{expected} (krippendorff)" in status and "Open conflicts" in status and ":x:" in status

    # conflicts: a non-owner's press is refused and audited; the owner's settles it
    before = len(emulator.ephemerals(CHANNEL))
    assert slack.slash("conflicts ticket-router", channel=CHANNEL).status == 200
    listing = emulator.wait_for(lambda: emulator.ephemerals(CHANNEL)[before:], what="conflicts")[-1]
    assert ticket("shipping", 0) in blocks_text(listing)
    listing["ts"] = listing.get("message_ts", "1.000")
    slack.press(listing, "shipping :four:", user="UBOB", channel=CHANNEL)
    emulator.wait_for(
        lambda: any("owner" in e["text"] for e in emulator.ephemerals(CHANNEL) if e["user"] == "UBOB"),
        what="refusal",
    )
    slack.press(listing, "shipping :four:", user="UALICE", channel=CHANNEL)
    emulator.wait_for(
        lambda: any(c.args.get("name") == "warning" for c in emulator.calls_to("reactions.remove")),
        what="unmark",
    )
    emulator.wait_for(lambda: "*Conflicts*\\n0" in blocks_text(root_message(emulator)), what="tally")
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        log = audit.entries(session, project_id=project.id)
        settled_example = examples.find_example(session, project.id, CHANNEL, three_way)
    assert [(e.user_id, e.allowed) for e in reversed(log)] == [("UBOB", False), ("UALICE", True)]
    assert settled_example.final_label == "shipping" and settled_example.decided_by == "UALICE"

    # snapshot; 10 more examples arrive; no old example changes split
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        first, created = snapshots.build_snapshot(session, project, created_by="test")
        again, created_again = snapshots.build_snapshot(session, project, created_by="test")
        first_rows = {r.example_id: r.split for r in snapshots.snapshot_rows(session, first.id)}
    assert created and not created_again and again.id == first.id
    assert len(first_rows) == 32 and {Split.TRAIN, Split.EVAL} == set(first_rows.values())

    for n in range(8, 10):
        for label in LABELS + (["billing", "technical"] if n == 8 else []):
            message = slack.reply(CHANNEL, root["ts"], ticket(label, n + 20), "UDAVE")
            for reviewer in ("UALICE", "UBOB"):
                slack.react(CHANNEL, message["ts"], EMOJI[label], reviewer)
    emulator.wait_for(lambda: "42 (0 awaiting" in blocks_text(root_message(emulator)), what="42 examples")
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        second, _ = snapshots.build_snapshot(session, project)
        second_rows = {r.example_id: r.split for r in snapshots.snapshot_rows(session, second.id)}
    assert second.id != first.id and len(second_rows) == 42
    assert {k: second_rows[k] for k in first_rows} == first_rows

    # the export: chat messages with the project's instructions, split as the snapshot says
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        exporting.export_snapshot(session, project, second, tmp_path / "export")
    lines = {
        split_name: [
            json.loads(line)
            for line in (tmp_path / "export" / f"{split_name}.jsonl").read_text().splitlines()
        ]
        for split_name in ("train", "eval")
    }
    assert len(lines["train"]) == second.n_train and len(lines["eval"]) == second.n_eval
    assert len(lines["train"]) + len(lines["eval"]) == 42
    first_record = lines["train"][0]["messages"]
    assert [m["role"] for m in first_record] == ["system", "user", "assistant"]
    assert first_record[0]["content"] == PROJECT_FORM["instructions"] and first_record[2]["content"] in LABELS
    card = json.loads((tmp_path / "export" / "dataset_card.json").read_text())
    assert card["snapshot"] == second.id

    # an edited example: new text, votes stale; a deleted one leaves the dataset
    edited_ts = ordered[8]
    slack.edit(CHANNEL, messages[edited_ts], ticket("billing", 99))
    slack.delete(CHANNEL, messages[ordered[9]])
    emulator.wait_for(lambda: "41 (1 awaiting" in blocks_text(root_message(emulator)), what="edit+delete")
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        stats = gates.project_stats(session, project)
        edited = examples.find_example(session, project.id, CHANNEL, edited_ts)
    assert edited.input_text == ticket("billing", 99) and stats.stale_votes == 3


def test_a_thread_reply_that_does_not_fit_the_task_is_explained(slack, emulator):
    view = open_modal(slack, emulator)
    form = {
        **PROJECT_FORM,
        "name": "invoice-fields",
        "task_type": "extraction",
        "labels": "",
        "fields": "invoice_number, total",
    }
    assert slack.submit(view, form).status == 200
    root = emulator.wait_for(
        lambda: next(
            (m for m in emulator.messages(CHANNEL) if m["text"].startswith("Dataset invoice-fields")), None
        ),
        what="root",
    )
    slack.reply(CHANNEL, root["ts"], "Invoice 42, total 10 EUR", "UDAVE")  # no target
    slack.reply(CHANNEL, root["ts"], 'Invoice 43, total 12 EUR\n---\n{"invoice_number": "43"}', "UDAVE")
    slack.reply(
        CHANNEL, root["ts"], 'Invoice 44, total 9 EUR\n---\n{"invoice_number": "44", "total": "9"}', "UDAVE"
    )
    notes = emulator.wait_for(
        lambda: len(emulator.ephemerals(CHANNEL)) >= 2 and emulator.ephemerals(CHANNEL),
        what="two explanations",
    )
    texts = " ".join(n["text"] for n in notes)
    assert "---" in texts and "missing total" in texts
    emulator.wait_for(
        lambda: "1 (1 awaiting" in blocks_text(root_message_named(emulator, "invoice-fields")),
        what="one example",
    )


def root_message_named(emulator, name: str) -> dict[str, Any]:
    return next(m for m in emulator.messages(CHANNEL) if m["text"].startswith(f"Dataset {name}"))


@pytest.mark.parametrize("in_thread", [False, True])
def test_the_add_to_dataset_shortcut(slack, emulator, engine, in_thread):
    create_project(slack, emulator)
    if in_thread:
        with session_scope(engine) as session:
            project = projects.get_project(session, "ticket-router")
            project.task_type = "generation"  # a target task: the thread root is the input
            project.labels = []
            session.add(project)
        question = emulator.post_user_message("CGENERAL", "where is my parcel 77?", "UDAVE")
        chosen = emulator.post_user_message(
            "CGENERAL", "It left the warehouse today.", "UALICE", thread_ts=question["ts"]
        )
    else:
        chosen = emulator.post_user_message("CGENERAL", "my card was billed twice", "UDAVE")
    assert slack.message_shortcut("add_to_dataset", "CGENERAL", chosen).status == 200
    view = emulator.wait_for(lambda: emulator.calls_to("views.open")[1:], what="shortcut modal")[-1].args[
        "view"
    ]
    assert slack.submit(view, {"project": "ticket-router"}).status == 200
    emulator.wait_for(
        lambda: any("Added to" in e["text"] for e in emulator.ephemerals("CGENERAL")), what="added"
    )
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        example = examples.find_example(session, project.id, "CGENERAL", chosen["ts"])
    if in_thread:
        assert example.input_text == "where is my parcel 77?"
        assert example.target_text == "It left the warehouse today."
    else:
        assert example.input_text == "my card was billed twice" and example.target_text is None


def test_the_home_tab_shows_each_projects_gates(slack, emulator):
    create_project(slack, emulator)
    assert (
        slack.event({"type": "app_home_opened", "user": "UALICE", "channel": "D1", "tab": "home"}).status
        == 200
    )
    home = emulator.wait_for(lambda: emulator.home_view("UALICE"), what="home")
    text = blocks_text(home)
    assert "ticket-router" in text and "Reviewer agreement" in text
