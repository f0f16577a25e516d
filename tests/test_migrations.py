"""Migrations carry existing data over: a database at the previous head, with rows in it, upgrades to
enum and JSON columns without losing or changing what the rows say (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select

from runner.core.db import downgrade, make_engine, session_scope, upgrade
from runner.core.models import (
    DeployAction,
    Deployment,
    DeployState,
    EventStatus,
    Example,
    Interview,
    InterviewStatus,
    ModelVersion,
    ProcessedEvent,
    RunStatus,
    Snapshot,
    SnapshotExample,
    Split,
    TaskType,
    TrainingRun,
    VersionStatus,
)
from runner.data import projects
from runner.registry import versions
from tests.conftest import DATABASES, PG_URL

ROWS_AT_0004 = [
    """INSERT INTO interview (team_id, channel_id, user_id, topic, source, status, step, "primary",
       result_json, created_at) VALUES ('T', 'C1', 'U1', 'routing', 'slash', 'finished', 4,
       'Fine-tuning', '{"primary": "Fine-tuning", "reasons": ["narrow task"]}', CURRENT_TIMESTAMP)""",
    """INSERT INTO processed_event (event_id, event_type, received_at, status, body, attempts)
       VALUES ('Ev1', 'reaction_added', CURRENT_TIMESTAMP, 'failed', '{"event_id": "Ev1", "n": 1}', 2)""",
    """INSERT INTO processed_event (event_id, event_type, received_at, status, body, attempts)
       VALUES ('Ev2', 'message', CURRENT_TIMESTAMP, 'done', NULL, 1)""",
    """INSERT INTO project (name, task_type, channel_id, owner_id, labels_json, fields_json, reviewers_json,
       reviewer_groups_json, min_per_label, agreement_threshold, eval_fraction, instructions, created_at)
       VALUES ('router', 'classification', 'C1', 'U1', '[{"name": "billing", "emoji": "one"},
       {"name": "tech", "emoji": "two"}]', '[]', '["U2", "U3"]', '["S1"]', 10, 0.6, 0.2, 'route it',
       CURRENT_TIMESTAMP)""",
    """INSERT INTO snapshot (id, project_id, created_by, n_train, n_eval, stats_json, created_at) VALUES
       ('s1', 1, 'U1', 1, 1, '{"agreement": {"method": "cohen", "kappa": 0.42}, "task_type":
       "classification"}', CURRENT_TIMESTAMP)""",
    """INSERT INTO snapshot_example (snapshot_id, example_id, split, input_text, target, label)
       VALUES ('s1', 7, 'eval', 'my card was charged twice', 'billing', 'billing')""",
    """INSERT INTO training_run (project_id, snapshot_id, status, config_json, requested_by, progress_json,
       metrics_json, created_at) VALUES (1, 's1', 'finished', '{"base_model": "tiny", "epochs": 3}', 'U1',
       '{"step": 9}', '{"tokens_per_s": 812.5}', CURRENT_TIMESTAMP)""",
    """INSERT INTO model_version (project_id, number, run_id, snapshot_id, base_model, status, artifact_path,
       config_json, metrics_json, eval_json, created_at) VALUES
       (1, 1, 1, 's1', 'tiny', 'retired', '/a/v1', '{"epochs": 3}', '{}', NULL, CURRENT_TIMESTAMP),
       (1, 2, 1, 's1', 'tiny', 'production', '/a/v2', '{"epochs": 2}', '{"loss": 0.1}',
        '{"verdict": {"promote": true}}', CURRENT_TIMESTAMP),
       (1, 3, 1, 's1', 'tiny', 'discarded', '/a/v3', '{}', '{}', NULL, CURRENT_TIMESTAMP)""",
    """INSERT INTO production_alias (project_id, version_id, revision, updated_at)
       VALUES (1, 2, 2, CURRENT_TIMESTAMP)""",
    """INSERT INTO deployment (project_id, action, version_id, previous_version_id, by, reason, revision, at)
       VALUES (1, 'promote', 1, NULL, 'U1', '', 1, CURRENT_TIMESTAMP),
              (1, 'promote', 2, 1, 'U1', 'better', 2, CURRENT_TIMESTAMP)""",
]


@pytest.fixture(params=DATABASES)
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database with no tables at all (a private schema on PostgreSQL)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"ftbot_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_upgrading_a_database_with_rows_in_it_keeps_what_they_say(empty_engine):
    upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0004:
            conn.execute(text(statement))
    upgrade(empty_engine)

    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        interview = session.get(Interview, 1)
        assert interview is not None and interview.status is InterviewStatus.FINISHED
        assert interview.result == {"primary": "Fine-tuning", "reasons": ["narrow task"]}
        failed, done = session.get(ProcessedEvent, "Ev1"), session.get(ProcessedEvent, "Ev2")
        assert (
            failed is not None
            and failed.status is EventStatus.FAILED
            and failed.body == {"event_id": "Ev1", "n": 1}
        )
        assert done is not None and done.body is None and done.status is EventStatus.DONE
        project = projects.get_project(session, "router")
        assert project.task_type is TaskType.CLASSIFICATION
        assert project.labels == [{"name": "billing", "emoji": "one"}, {"name": "tech", "emoji": "two"}]
        assert (project.reviewers, project.reviewer_groups, project.fields) == (["U2", "U3"], ["S1"], [])
        assert projects.legend(project) == {"one": "billing", "two": "tech"}
        snapshot = session.get(Snapshot, "s1")
        assert snapshot is not None
        assert snapshot.stats["agreement"] == {"method": "cohen", "coefficient": 0.42}
        row = session.get(SnapshotExample, ("s1", 7))
        assert row is not None and row.split is Split.EVAL
        run = session.get(TrainingRun, 1)
        assert run is not None and run.status is RunStatus.FINISHED
        assert (run.config, run.progress, run.metrics) == (
            {"base_model": "tiny", "epochs": 3},
            {"step": 9},
            {"tokens_per_s": 812.5},
        )
        found = {v.number: v for v in versions.versions(session, project)}
        assert {n: v.status for n, v in found.items()} == {
            1: VersionStatus.CANDIDATE,
            2: VersionStatus.CANDIDATE,
            3: VersionStatus.DISCARDED,
        }
        # What people are told is unchanged: the alias says which one serves, history which served.
        assert {n: versions.status_of(session, v) for n, v in found.items()} == {
            1: "retired",
            2: "production",
            3: "discarded",
        }
        assert found[2].evaluation == {"verdict": {"promote": True}} and found[1].evaluation is None
        assert [d.action for d in reversed(versions.history(session, project))] == [
            DeployAction.PROMOTE,
            DeployAction.PROMOTE,
        ]
        # The new columns take writes as the code makes them.
        session.add(
            ModelVersion(project_id=1, number=4, snapshot_id="s1", base_model="tiny", artifact_path="/a/v4")
        )
        project.labels = [*project.labels, {"name": "account", "emoji": "three"}]
        session.add(project)
    with session_scope(empty_engine) as session:
        assert len(projects.get_project(session, "router").labels) == 3


def test_the_migration_can_be_reverted(empty_engine):
    upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0004:
            conn.execute(text(statement))
    upgrade(empty_engine)
    downgrade(empty_engine, "0004")
    with empty_engine.connect() as conn:
        labels, stats = conn.execute(
            text("SELECT p.labels_json, s.stats_json FROM project p JOIN snapshot s ON s.project_id = p.id")
        ).one()
        assert '"billing"' in labels and '"kappa"' in stats
    upgrade(empty_engine)


def test_0006_marks_versions_rolled_back_from_and_keeps_every_move(empty_engine):
    upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0004:
            conn.execute(text(statement))
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:  # v2 was rolled back to v1; a run's message was posted
        conn.execute(
            text(
                "INSERT INTO deployment (project_id, action, version_id, previous_version_id, by, reason, "
                "revision, at) VALUES (1, 'rollback', 1, 2, 'U9', 'errors', 3, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(text("UPDATE production_alias SET version_id = 1, revision = 3"))
        conn.execute(text("UPDATE training_run SET status_ts = '1700000000.000300'"))
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        project = projects.get_project(session, "router")
        found = {v.number: v.status for v in versions.versions(session, project)}
        assert found == {1: VersionStatus.CANDIDATE, 2: VersionStatus.ROLLED_BACK, 3: VersionStatus.DISCARDED}
        moves = versions.history(session, project)
        assert [(d.action, d.state, d.reason) for d in reversed(moves)] == [
            (DeployAction.PROMOTE, DeployState.DONE, ""),
            (DeployAction.PROMOTE, DeployState.DONE, "better"),
            (DeployAction.ROLLBACK, DeployState.DONE, "errors"),
        ]
        assert versions.alias(session, project).pending_id is None
        run = session.get(TrainingRun, 1)
        assert run is not None and run.shown_status == "finished"
        # Lineage over the migrated history: v1 was first promoted with nothing before it.
        assert versions.previous_production(session, project) is None
        # The new columns and values take writes as the code makes them.
        session.add(
            Deployment(
                project_id=1,
                action=DeployAction.PROMOTE,
                version_id=2,
                previous_version_id=1,
                by="U1",
                state=DeployState.FAILED,
                detail="not done: the deploy hook exited 1",
            )
        )

    downgrade(empty_engine, "0005")
    with empty_engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT number, status FROM model_version")).all())
        moves = conn.execute(text("SELECT action, reason FROM deployment ORDER BY id")).all()
    assert statuses == {1: "candidate", 2: "candidate", 3: "discarded"}
    assert [tuple(m) for m in moves] == [("promote", ""), ("promote", "better"), ("rollback", "errors")]
    upgrade(empty_engine)


ROWS_AT_0005 = [
    """INSERT INTO project (name, task_type, channel_id, root_ts, owner_id, labels, fields, reviewers,
       reviewer_groups, min_per_label, agreement_threshold, eval_fraction, instructions, created_at)
       VALUES ('router', 'classification', 'C1', '1.000100', 'U1', '[{"name": "billing", "emoji": "one"}]',
       '[]', '["U2"]', '[]', 10, 0.6, 0.2, '', CURRENT_TIMESTAMP)""",
    """INSERT INTO example (project_id, channel_id, message_ts, author_id, source, raw_text, input_text,
       overlong, warning_marked, created_at) VALUES
       (1, 'C1', '1.000200', 'U3', 'thread', 'charged twice', 'charged twice', false, false,
        CURRENT_TIMESTAMP),
       (1, 'C1', '1.000300', 'U3', 'thread', 'app crashes', 'app crashes', false, false, CURRENT_TIMESTAMP),
       (1, 'C1', '1.000400', 'U3', 'thread', 'never snapshotted', 'never snapshotted', false, false,
        CURRENT_TIMESTAMP)""",
    # Two snapshots that disagreed about example 1 (the split used to move): the first one counts.
    """INSERT INTO snapshot (id, project_id, created_by, n_train, n_eval, stats, created_at) VALUES
       ('s-old', 1, 'U1', 2, 0, '{}', '2026-11-01 10:00:00+00'),
       ('s-new', 1, 'U1', 1, 1, '{}', '2026-11-02 10:00:00+00')""",
    """INSERT INTO snapshot_example (snapshot_id, example_id, split, input_text, target, label) VALUES
       ('s-new', 1, 'eval', 'charged twice', 'billing', 'billing'),
       ('s-old', 1, 'train', 'charged twice', 'billing', 'billing'),
       ('s-old', 2, 'train', 'app crashes', 'billing', 'billing'),
       ('s-new', 2, 'train', 'app crashes', 'billing', 'billing')""",
]


def test_0007_pins_each_snapshotted_example_to_the_side_of_its_first_snapshot(empty_engine):
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0005:
            conn.execute(text(statement))
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        found = {e.id: e.split for e in session.exec(select(Example)).all()}
        project = projects.get_project(session, "router")
        assert (project.tally_dirty, project.root_error) == (False, None)
    assert found == {1: Split.TRAIN, 2: Split.TRAIN, 3: None}
    # The new columns take writes, and the migration reverts without losing the rest.
    with session_scope(empty_engine) as session:
        project = projects.get_project(session, "router")
        project.tally_dirty, project.root_error = True, "not_in_channel"
        session.add(project)
    downgrade(empty_engine, "0005")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM example")).scalar() == 3
        assert conn.execute(text("SELECT count(*) FROM snapshot_example")).scalar() == 4
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        assert session.get(Example, 1).split is Split.TRAIN


def test_0008_adds_pilots_predictions_and_drift_alerts_and_reverts_cleanly(empty_engine):
    from runner.core.models import AlertStatus, DriftAlert, Pilot, Prediction, PredictionStatus, ReviewOutcome

    upgrade(empty_engine, "0004")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0004:
            conn.execute(text(statement))
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        session.add(Pilot(project_id=1, channel_id="CPILOT", by="U1"))
        session.add(
            Prediction(
                project_id=1,
                version_id=2,
                channel_id="CPILOT",
                message_ts="1.1",
                input_text="charged twice",
                status=PredictionStatus.DONE,
                label="billing",
                outcome=ReviewOutcome.CORRECTED,
            )
        )
        session.add(DriftAlert(project_id=1, version_id=2, evidence={"reviewed": 12}, revision=2))
    with session_scope(empty_engine) as session:
        prediction = session.exec(select(Prediction)).one()
        assert (prediction.status, prediction.outcome) == (PredictionStatus.DONE, ReviewOutcome.CORRECTED)
        alert = session.exec(select(DriftAlert)).one()
        assert alert.status is AlertStatus.OPEN and alert.evidence == {"reviewed": 12}
    downgrade(empty_engine, "0007")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM model_version")).scalar_one() == 3
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        assert session.exec(select(Prediction)).all() == []


def test_0009_adds_paused_runs_and_reverts_them_to_cancelled(empty_engine):
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0005:
            conn.execute(text(statement))
    upgrade(empty_engine, "0007")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO training_run (project_id, snapshot_id, status, config, requested_by, "
                "progress, created_at) VALUES (1, 's-old', 'running', '{}', 'U1', '{}', CURRENT_TIMESTAMP)"
            )
        )
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        run = session.get(TrainingRun, 1)
        assert run is not None and run.status is RunStatus.RUNNING
        assert (run.attempt, run.auto_resumes, run.checkpoint_step, run.control, run.note) == (
            0,
            0,
            None,
            None,
            None,
        )
        run.status, run.checkpoint_step, run.note = RunStatus.PAUSED, 40, "Paused at step 40."
        session.add(run)
    with session_scope(empty_engine) as session:
        assert session.get(TrainingRun, 1).status is RunStatus.PAUSED
    downgrade(empty_engine, "0008")
    with empty_engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status, error FROM training_run ORDER BY id")).all()
    assert [(r[0], r[1]) for r in rows] == [(1, "cancelled")]
    assert "downgraded" in rows[0][2]
    upgrade(empty_engine)


def test_0010_adds_blind_ab_comparisons_and_the_promote_rule_and_reverts_cleanly(empty_engine):
    from runner.core.models import (
        AbChoice,
        Comparison,
        ComparisonItem,
        ComparisonReaction,
        ComparisonStatus,
        Prediction,
        Project,
    )

    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0005:
            conn.execute(text(statement))
    upgrade(empty_engine, "0009")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_version (project_id, number, snapshot_id, base_model, status, "
                "artifact_path, config, metrics, created_at) VALUES (1, 1, 's-new', 'tiny', 'candidate', "
                "'/a/v1', '{}', '{}', CURRENT_TIMESTAMP)"
            )
        )
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        project = session.exec(select(Project)).one()
        version = session.exec(select(ModelVersion)).first()
        assert project.require_ab is False and version is not None and version.summary_ts is None
        project.require_ab = True
        version.summary_channel_id, version.summary_ts = "C1", "9.000100"
        session.add_all([project, version])
        predictions = [
            Prediction(project_id=project.id, version_id=version.id, message_ts=f"ab:1:{s}", input_text="hi")
            for s in "ab"
        ]
        session.add_all(predictions)
        comparison = Comparison(
            project_id=project.id,
            version_ids=[version.id],
            source="heldout",
            n=1,
            seed=7,
            channel_id="C1",
            created_by="U1",
        )
        session.add(comparison)
        session.flush()
        item = ComparisonItem(
            comparison_id=comparison.id,
            position=1,
            input_text="hi",
            version_a_id=version.id,
            version_b_id=version.id,
            prediction_a_id=predictions[0].id,
            prediction_b_id=predictions[1].id,
        )
        session.add(item)
        session.flush()
        session.add(ComparisonReaction(item_id=item.id, reviewer_id="U2", choice=AbChoice.TIE))
    with session_scope(empty_engine) as session:
        stored = session.exec(select(Comparison)).one()
        assert stored.status is ComparisonStatus.OPEN and stored.version_ids == [version.id]
        assert session.exec(select(ComparisonReaction)).one().choice is AbChoice.TIE
        assert session.exec(select(Project)).one().require_ab is True
    downgrade(empty_engine, "0009")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM project")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM prediction")).scalar_one() == 2
        assert conn.execute(text("SELECT artifact_path FROM model_version")).scalar_one() == "/a/v1"
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        assert session.exec(select(Comparison)).all() == []
        assert session.exec(select(Project)).one().require_ab is False


def test_0011_adds_corrections_weighting_and_shown_shadows_and_reverts_cleanly(empty_engine):
    from runner.core.models import Correction, Pilot, Prediction, PredictionStatus

    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0005:
            conn.execute(text(statement))
    upgrade(empty_engine, "0010")
    with empty_engine.begin() as conn:  # a pilot with one answered suggestion, before 0011
        conn.execute(
            text(
                "INSERT INTO model_version (project_id, number, snapshot_id, base_model, status, "
                "artifact_path, config, metrics, created_at) VALUES (1, 1, 's-old', 'tiny', 'candidate', "
                "'/a/v1', '{}', '{}', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO pilot (project_id, channel_id, enabled, by, updated_at) "
                "VALUES (1, 'CPILOT', true, 'U1', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO prediction (project_id, version_id, channel_id, message_ts, author_id, "
                "input_text, shadow, status, label, suggestion_ts, created_at) VALUES (1, 1, 'CPILOT', "
                "'2.000100', 'U3', 'app crashes', false, 'done', 'billing', '2.000200', CURRENT_TIMESTAMP)"
            )
        )
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        prediction = session.exec(select(Prediction)).one()
        assert prediction.status is PredictionStatus.DONE and prediction.label == "billing"
        assert session.get(Pilot, 1).shadow_shown is False  # type: ignore[union-attr]
        assert projects.get_project(session, "router").weighted_consensus is False  # off until turned on
        session.add(
            Correction(
                prediction_id=prediction.id,
                reviewer_id="U2",
                rejected=True,
                reply_ts="2.000300",
                value="tech",
            )
        )
    with session_scope(empty_engine) as session:
        (correction,) = session.exec(select(Correction)).all()
        assert (correction.rejected, correction.value, correction.applied) == (True, "tech", None)
    downgrade(empty_engine, "0010")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction")).scalar_one() == 1
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        assert session.exec(select(Correction)).all() == []


def test_0012_adds_training_requests_and_run_approval_and_reverts_cleanly(empty_engine):
    from runner.core.models import RequestStatus, TrainingRequest

    upgrade(empty_engine, "0005")
    with empty_engine.begin() as conn:
        for statement in ROWS_AT_0005:
            conn.execute(text(statement))
    upgrade(empty_engine, "0011")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO training_run (project_id, snapshot_id, status, config, requested_by, "
                "progress, attempt, auto_resumes, created_at) VALUES (1, 's-old', 'finished', "
                "'{\"procs\": 1}', 'U1', '{}', 0, 0, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    with session_scope(empty_engine) as session:
        run = session.get(TrainingRun, 1)
        assert run is not None and (run.approved_by, run.hardware_class) == (None, None)
        run.approved_by, run.hardware_class = "UADMIN", "a10"
        session.add(run)
        session.add(
            TrainingRequest(
                project_id=1,
                snapshot_id="s-old",
                config={"epochs": 2},
                estimate={"gpu_hours": 0.5},
                budget={"limit": 10.0, "over": False},
                requested_by="U1",
                run_id=1,
                status=RequestStatus.CONFIRMED,
            )
        )
    with session_scope(empty_engine) as session:
        request = session.exec(select(TrainingRequest)).one()
        assert request.status is RequestStatus.CONFIRMED and request.estimate == {"gpu_hours": 0.5}
        assert session.get(TrainingRun, 1).hardware_class == "a10"
    downgrade(empty_engine, "0011")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM training_run")).scalars().all() == ["finished"]
        columns = {c[1] for c in conn.execute(text("SELECT * FROM training_run")).cursor.description or []}
        assert not {"approved_by", "hardware_class"} & columns
    upgrade(empty_engine)
    with session_scope(empty_engine) as session:
        assert session.exec(select(TrainingRequest)).all() == []
