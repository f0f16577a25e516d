"""`/finetune reviewers`: each reviewer's agreement, dataset and pilot votes together."""

from __future__ import annotations

from runner.core.db import session_scope
from runner.data import dawid_skene, examples, gates, projects
from tests.pilot_support import PROJECT, make_project


def test_reviewers_shows_each_reviewers_agreement(slack, emulator, engine, settings):
    make_project(engine, settings, count=1)
    votes = [
        ("thread", {"UALICE": "billing", "UBOB": "billing", "UCAROL": "technical"}),
        ("thread", {"UALICE": "billing", "UBOB": "billing"}),
        ("pilot", {"UALICE": "account", "UCAROL": "account"}),
    ]
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        for i, (source, cast) in enumerate(votes):
            example, _ = examples.add_example(
                session,
                project,
                channel_id="CGENERAL",
                message_ts=f"17.{i}",
                author_id="UDAVE",
                text=f"ticket {i}",
                source=source,
            )
            for reviewer, value in cast.items():
                examples.add_vote(session, example.id, reviewer, value)
        assert len(gates.example_states(session, project)) == 3

    assert slack.slash("reviewers ticket-router", user="UDAVE").status == 200
    shown = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["text"].startswith("Reviewers of")), None)
    )
    lines = shown["text"].splitlines()[1:]
    assert lines == [
        # by hand: on the first ticket UALICE's and UBOB's others tie, so only UCAROL's vote is checked
        "• <@UCAROL> agrees 1/2 (50%, 95% CI 9%–91%), 1 of them pilot reviews",
        "• <@UALICE> agrees 2/2 (100%, 95% CI 34%–100%), 1 of them pilot reviews",
        "• <@UBOB> agrees 1/1 (100%, 95% CI 21%–100%)",
        "Consensus counts one vote each (`/finetune reviewers ticket-router weighting on` weighs them).",
    ]
    assert slack.slash("reviewers nosuch", user="UDAVE").status == 200
    emulator.wait_for(lambda: any("nosuch" in e["text"] for e in emulator.ephemerals()))


def test_weighting_reviewers_by_reliability_changes_a_settled_label(slack, emulator, engine, settings):
    """UALICE and UBOB are always right; UCAROL says shipping whenever billing is right; UERIN is right
    two times in three. On the last ticket UCAROL and UERIN outvote UALICE: majority vote settles it as
    shipping, weighting by estimated reliability as billing (the hand-made case of
    tests/unit/test_dawid_skene.py, by Slack user)."""
    from tests.unit.test_dawid_skene import BILLING, SHIPPING, TARGET

    people = {"A": "UALICE", "B": "UBOB", "C": "UCAROL", "D": "UERIN"}
    make_project(engine, settings, count=1, reviewers=tuple(people.values()))
    with session_scope(engine) as session:
        project = projects.get_project(session, PROJECT)
        for i, cast in enumerate([*BILLING, *SHIPPING, TARGET]):
            example, _ = examples.add_example(
                session,
                project,
                channel_id="CGENERAL",
                message_ts=f"18.{i:03d}",
                author_id="UDAVE",
                text=f"t {i}",
            )
            for letter, value in cast.items():
                examples.add_vote(session, example.id, people[letter], value)

    def settled_label() -> str | None:
        with session_scope(engine) as session:
            states = gates.example_states(session, projects.get_project(session, PROJECT))
            return next(s.label for s in states if s.example.message_ts == "18.012")

    assert settled_label() == "shipping"
    assert slack.slash("reviewers ticket-router weighting on", user="UBOB").status == 200  # not the owner
    refusal = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["user"] == "UBOB"), None), what="the refusal"
    )
    assert "Only the project owner" in refusal["text"] and "may change the settings of" in refusal["text"]
    assert slack.slash("reviewers ticket-router weighting sideways").status == 200
    emulator.wait_for(lambda: any("Usage: `/finetune reviewers" in str(r) for r in emulator.responses()))
    assert settled_label() == "shipping"

    assert slack.slash("reviewers ticket-router weighting on").status == 200
    emulator.wait_for(
        lambda: any("turned on reviewer weighting" in m["text"] for m in emulator.messages("CGENERAL")),
        what="weighting on",
    )
    assert settled_label() == "billing"
    assert slack.slash("reviewers ticket-router", user="UDAVE").status == 200
    shown = emulator.wait_for(
        lambda: next((e for e in emulator.ephemerals() if e["text"].startswith("Reviewers of")), None)
    )
    lines = dict(
        (line.split(">", 1)[0].removeprefix("• <@"), line) for line in shown["text"].splitlines()[1:-1]
    )
    # the estimates shown are the model's on these votes, over the project's four labels
    units = {
        i: {people[k]: v for k, v in cast.items()} for i, cast in enumerate([*BILLING, *SHIPPING, TARGET])
    }
    model = dawid_skene.fit(units, ["billing", "technical", "account", "shipping"])
    for user in people.values():
        assert lines[user].endswith(f"; estimated accuracy {model.accuracy(user):.0%}")
    assert model.accuracy("UALICE") > 0.85 > model.accuracy("UERIN") > model.accuracy("UCAROL")  # type: ignore[operator]
    assert shown["text"].splitlines()[-1].startswith("Consensus weighs them by their estimated accuracy")

    assert slack.slash("reviewers ticket-router weighting off").status == 200
    emulator.wait_for(
        lambda: any("turned off reviewer weighting" in m["text"] for m in emulator.messages("CGENERAL"))
    )
    assert settled_label() == "shipping"
    with session_scope(engine) as session:
        from runner.core import audit

        project = projects.get_project(session, PROJECT)
        rows = [
            (e.user_id, e.target, e.allowed) for e in reversed(audit.entries(session, project_id=project.id))
        ]
    assert rows == [
        ("UBOB", "reviewer weighting on", False),
        ("UALICE", "reviewer weighting on", True),
        ("UALICE", "reviewer weighting off", True),
    ]
