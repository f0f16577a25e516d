"""`/finetune reviewers`: each reviewer's agreement, dataset and pilot votes together."""

from __future__ import annotations

from runner.core.db import session_scope
from runner.data import examples, gates, projects
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
    ]
    assert slack.slash("reviewers nosuch", user="UDAVE").status == 200
    emulator.wait_for(lambda: any("nosuch" in e["text"] for e in emulator.ephemerals()))
