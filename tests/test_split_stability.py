"""Split stability with the real services and databases: once an example has been in a snapshot, its
side never changes, and near duplicates never straddle the split.

One test drives a project through Slack (signed requests: thread replies, reactions, a deletion)
with the snapshots taken as `/finetune train` and `ftbot dataset snapshot` take them; a property
test replays random histories through the dataset services on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from sqlalchemy.engine import Engine
from sqlmodel import select

from runner.core.db import session_scope
from runner.core.exceptions import DatasetError
from runner.core.models import Example, Project, Split
from runner.data import examples, projects, snapshots
from runner.data.split import _unit_interval
from runner.data.textnorm import canonical
from tests.split_sequences import SnapshotLog, Step, histories
from tests.test_datasets_slack import CHANNEL, create_project
from tests.training_support import wait_until

_names = itertools.count(1)


def side_of(text: str, label: str = "billing", eval_fraction: float = 0.2) -> Split:
    """The side a text would draw as the anchor of its own group (runner.data.split's formula)."""
    value = _unit_interval("ftbot-split-v1", label, canonical(text))
    return Split.EVAL if value < eval_fraction else Split.TRAIN


def reorderings_drawn_apart() -> tuple[str, str, str]:
    """Three orderings of one ticket: the first draws one side, the other two the other side."""
    for n in range(500):
        ref = "".join(chr(ord("a") + int(d)) for d in str(n))  # digits would all read as 0 (canonical)
        a, b, c = "my card was charged twice", f"the invoice {ref} shows the wrong total", "I want a refund"
        texts = (f"{a} and {b} and {c}", f"{b} and {c} and {a}", f"{c} and {a} and {b}")
        sides = [side_of(t) for t in texts]
        if sides[0] != sides[1] == sides[2]:
            return texts
    raise AssertionError("no such orderings")


def snapshot_sides(engine: Engine, name: str) -> dict[int, Split]:
    with session_scope(engine) as session:
        project = projects.get_project(session, name)
        snapshot, _ = snapshots.build_snapshot(session, project, created_by="test")
        return {r.example_id: r.split for r in snapshots.snapshot_rows(session, snapshot.id)}


def example_id(engine: Engine, ts: str) -> int:
    """The id of the example recorded from message `ts`, once its event has been handled (events are
    handled concurrently: a message's example may land after a later message's votes)."""

    def recorded() -> int | None:
        with session_scope(engine) as session:
            found = session.exec(select(Example).where(Example.message_ts == ts)).first()
            return found.id if found is not None else None

    return int(wait_until(recorded, what=f"the example of message {ts}"))


def test_through_slack_a_snapshotted_example_keeps_its_side_whatever_happens_around_it(
    slack, emulator, engine
):
    root = create_project(slack, emulator)
    earlier, later, third = reorderings_drawn_apart()

    def label(message: dict[str, Any], *, added: bool = True) -> None:
        for reviewer in ("UALICE", "UBOB"):
            assert slack.react(CHANNEL, message["ts"], "one", reviewer, added=added).status == 200

    # A ticket, and the same ticket with its clauses reordered, posted later; only the later one is
    # labelled before the first snapshot.
    first = slack.reply(CHANNEL, root["ts"], earlier, "UDAVE")
    second = slack.reply(CHANNEL, root["ts"], later, "UDAVE")
    label(second)
    wait_until(lambda: examples_labelled(engine) == 1, what="one labelled example")
    one = snapshot_sides(engine, "ticket-router")
    ids = {"first": example_id(engine, first["ts"]), "second": example_id(engine, second["ts"])}
    pinned = side_of(later)
    assert one == {ids["second"]: pinned}

    # The earlier twin is labelled now. Anchored on it, the group would move to its side; it does not.
    label(first)
    wait_until(lambda: examples_labelled(engine) == 2, what="two labelled examples")
    two = snapshot_sides(engine, "ticket-router")
    assert side_of(earlier) != pinned
    assert two == {ids["first"]: pinned, ids["second"]: pinned}

    # The later twin is deleted, a third ordering arrives, and the earlier one loses its votes.
    assert slack.delete(CHANNEL, second).status == 200
    third_message = slack.reply(CHANNEL, root["ts"], third, "UDAVE")
    label(third_message)
    label(first, added=False)
    ids["third"] = example_id(engine, third_message["ts"])
    wait_until(lambda: examples_labelled(engine) == 1, what="only the third labelled")
    three = snapshot_sides(engine, "ticket-router")
    assert three == {ids["third"]: pinned}, "the deleted anchor's twins stay where it was"
    with session_scope(engine) as session:
        assert {e.id: e.split for e in session.exec(select(Example)).all()} == {
            ids["first"]: pinned,
            ids["second"]: pinned,
            ids["third"]: pinned,
        }


def examples_labelled(engine: Engine) -> int:
    with session_scope(engine) as session:
        from runner.data import gates

        stats = gates.project_stats(session, projects.get_project(session, "ticket-router"))
        return sum(1 for s in stats.examples if gates.usable(s))


REVIEWERS = ("UALICE", "UBOB")


def replay(engine: Engine, history: list[Step]) -> SnapshotLog:
    """Apply a history to a new project through the dataset services, one unit of work per step."""
    name = f"history-{next(_names)}"
    with session_scope(engine) as session:
        spec = projects.ProjectSpec(
            name=name, task_type="classification", label_lines="billing\ntechnical", reviewers=list(REVIEWERS)
        )
        project_id = projects.create_project(session, spec, owner_id="UOWNER", channel_id="CDATA").id
    posted: list[str] = []  # message ts of each example, in order
    log = SnapshotLog()
    for step in history:
        with session_scope(engine) as session:
            project = session.get(Project, project_id)
            assert project is not None
            kind = step[0]
            if kind == "add":
                ts = f"{1_700_000_000 + len(posted)}.000100"
                examples.add_example(
                    session, project, channel_id="CDATA", message_ts=ts, author_id="UDAVE", text=step[1]
                )
                posted.append(ts)
            elif kind == "snapshot":
                try:
                    snapshot, _ = snapshots.build_snapshot(session, project)
                except DatasetError:
                    continue  # nothing labelled yet
                rows = snapshots.snapshot_rows(session, snapshot.id)
                log.check_and_add({r.example_id: (r.input_text, r.split) for r in rows})
                for row in rows:  # and every example in it is pinned to its side
                    stored = session.get(Example, row.example_id)
                    assert stored is not None and stored.split is row.split
            elif posted:
                ts = posted[step[1] % len(posted)]
                found = examples.find_example(session, project_id, "CDATA", ts)
                assert found is not None and found.id is not None
                if kind in ("label", "unlabel"):
                    for reviewer in REVIEWERS:
                        for value in ("billing", "technical"):
                            examples.remove_vote(session, found.id, reviewer, value)
                        if kind == "label":
                            examples.add_vote(session, found.id, reviewer, step[2])
                elif kind == "edit" and found.deleted_at is None:
                    examples.edit_example(session, "CDATA", ts, step[2])
                elif kind == "delete":
                    examples.delete_example(session, "CDATA", ts)
    return log


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories(max_steps=25))
def test_no_history_of_adds_labels_deletes_and_edits_moves_a_snapshotted_example(engine, history):
    replay(engine, history)
