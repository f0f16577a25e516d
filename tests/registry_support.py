"""Shared by the registry tests: a project with versions, its state, moves as an operator, and an
evaluation summary posted the way the evaluation job posts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.db import session_scope
from runner.core.models import ModelVersion, Snapshot
from runner.core.policy import Person
from runner.data import projects
from runner.registry import versions
from runner.slack import notify


def make_project_with_versions(engine, settings, count: int = 3) -> None:
    """A project with `count` registered candidate versions (adapter folders on disk)."""
    with session_scope(engine) as session:
        project = projects.create_project(
            session,
            projects.ProjectSpec(
                name="ticket-router",
                task_type="classification",
                label_lines="billing\nother",
                reviewers=["UALICE"],
            ),
            owner_id="UALICE",
            channel_id="CGENERAL",
        )
        # A thread root the emulator never hands out (its timestamps start after 1700000000), so
        # that no message a test posts takes its place, to be overwritten by a tally refresh.
        project.root_ts = "1600000000.000100"
        session.add(project)
        session.add(Snapshot(id="f" * 64, project_id=project.id))
        session.commit()
        for number in range(1, count + 1):
            folder = Path(settings.ftbot_data_dir) / "artifacts" / "ticket-router" / f"v{number}"
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text("{}")
            session.add(
                ModelVersion(
                    project_id=project.id,
                    number=number,
                    snapshot_id="f" * 64,
                    base_model="tiny",
                    artifact_path=str(folder),
                    config={},
                )
            )
        session.commit()


def state(engine) -> tuple[int | None, dict[int, str]]:
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        current = versions.production(session, project)
        return (
            current.number if current else None,
            {v.number: versions.status_of(session, v) for v in versions.versions(session, project)},
        )


def move(engine, settings, action: str, number: int | None = None, *, by: str = "U", **options):
    """A promote or rollback as an operator at the command line would ask for it."""
    return versions.request_move(
        engine,
        settings,
        Person(by, operator=True),
        action,
        project_name="ticket-router",
        number=number,
        **options,
    )


def post_summary(engine, settings, number: int) -> None:
    """Store an evaluation report on v`number` (against what serves now) and post its summary to the
    project thread, as the evaluation job does (`runner.slack.notify.post_summary`)."""
    with session_scope(engine) as session:
        project = projects.get_project(session, "ticket-router")
        serving = versions.production(session, project)
        revision = versions.alias(session, project).revision
        version = versions.get_version(session, project, number)

        def system(headline: float) -> dict[str, Any]:
            return {
                "headline": headline,
                "ci": [headline - 0.05, headline + 0.05],
                "tokens": {"mean_total_tokens": 40.0},
                "latency": {"p95": 0.1},
                "schema_compliance": 1.0,
            }

        version.evaluation = {
            "task_type": "classification",
            "n_examples": 20,
            "headline_name": "accuracy",
            "systems": {
                "base": system(0.5),
                "base_k_shot": system(0.6),
                "classical": system(0.55),
                "production": {"version": serving.number, **system(0.7)} if serving else None,
                "candidate": system(0.8),
            },
            "best_baseline": "base_k_shot",
            "comparisons": {"base_k_shot": {"mean_diff": 0.2, "ci_low": 0.1, "ci_high": 0.3, "better": True}},
            "small_classifier_does_as_well": False,
            "regressions": [],
            "verdict": {"promote": True, "reason": "better than production"},
            "chart": str(Path(settings.ftbot_data_dir) / "no-chart.png"),
            "production_revision": revision,
        }
        session.add(version)
        version_id = version.id
    assert version_id is not None
    notify.post_summary(settings, engine, version_id)
