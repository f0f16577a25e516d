"""statuses as enum columns, JSON in JSON columns; a version's status no longer repeats the alias

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 12:00:00.000000

Existing rows are carried over: text holding JSON becomes JSON (JSONB on PostgreSQL) under the
column's new name, status strings become enum values, versions marked "production" or "retired"
become "candidate" (whether a version serves is the production alias's alone), and snapshot
statistics name their agreement figure "coefficient" instead of "kappa".
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), 'postgresql')

# table -> [(old text column, new JSON column, nullable)]
JSON_COLUMNS = {
    'interview': [('result_json', 'result', True)],
    'processed_event': [('body', 'body', True)],
    'project': [
        ('labels_json', 'labels', False),
        ('fields_json', 'fields', False),
        ('reviewers_json', 'reviewers', False),
        ('reviewer_groups_json', 'reviewer_groups', False),
    ],
    'snapshot': [('stats_json', 'stats', False)],
    'training_run': [('config_json', 'config', False), ('progress_json', 'progress', False),
                     ('metrics_json', 'metrics', True)],
    'model_version': [('config_json', 'config', False), ('metrics_json', 'metrics', False),
                      ('eval_json', 'evaluation', True)],
}

# (table, column, enum type name, values, old length)
ENUM_COLUMNS = [
    ('interview', 'status', 'interviewstatus', ('open', 'finished'), 16),
    ('processed_event', 'status', 'eventstatus', ('pending', 'done', 'failed'), 16),
    ('project', 'task_type', 'tasktype', ('classification', 'extraction', 'generation'), 16),
    ('snapshot_example', 'split', 'split', ('train', 'eval'), 8),
    ('training_run', 'status', 'runstatus', ('queued', 'running', 'finished', 'failed', 'cancelled'), 16),
    ('model_version', 'status', 'versionstatus', ('candidate', 'discarded'), 16),
    ('deployment', 'action', 'deployaction', ('promote', 'rollback'), 16),
]


def _enum(name, values):
    return sa.Enum(*values, name=name)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    op.execute("UPDATE model_version SET status = 'candidate' WHERE status IN ('production', 'retired')")
    if postgres:
        op.execute("ALTER TABLE processed_event ALTER COLUMN status DROP DEFAULT")
        op.execute("ALTER TABLE processed_event ALTER COLUMN attempts DROP DEFAULT")
    for table, column, name, values, _length in ENUM_COLUMNS:
        kind = _enum(name, values)
        if postgres:
            kind.create(bind, checkfirst=True)
            op.alter_column(table, column, type_=kind, postgresql_using=f'"{column}"::{name}')
        else:
            with op.batch_alter_table(table) as batch:
                batch.alter_column(column, type_=kind)
    for table, columns in JSON_COLUMNS.items():
        for old, new, nullable in columns:
            if postgres:
                op.alter_column(table, old, type_=JSONB(), postgresql_using=f'"{old}"::jsonb')
                if old != new:
                    op.alter_column(table, old, new_column_name=new)
            else:  # SQLite keeps JSON as text: the stored documents are already what JSON would write
                with op.batch_alter_table(table) as batch:
                    batch.alter_column(old, new_column_name=new, type_=sa.JSON(), existing_nullable=nullable)
    snapshot = sa.table('snapshot', sa.column('id', sa.String), sa.column('stats', JSON))
    for snapshot_id, stats in bind.execute(sa.select(snapshot.c.id, snapshot.c.stats)).all():
        agreement = (stats or {}).get('agreement') or {}
        if 'kappa' in agreement:
            agreement['coefficient'] = agreement.pop('kappa')
            bind.execute(snapshot.update().where(snapshot.c.id == snapshot_id).values(stats=stats))


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    snapshot = sa.table('snapshot', sa.column('id', sa.String), sa.column('stats', JSON))
    for snapshot_id, stats in bind.execute(sa.select(snapshot.c.id, snapshot.c.stats)).all():
        agreement = (stats or {}).get('agreement') or {}
        if 'coefficient' in agreement:
            agreement['kappa'] = agreement.pop('coefficient')
            bind.execute(snapshot.update().where(snapshot.c.id == snapshot_id).values(stats=stats))
    for table, columns in JSON_COLUMNS.items():
        for old, new, nullable in columns:
            if postgres:
                if old != new:
                    op.alter_column(table, new, new_column_name=old)
                op.alter_column(table, old, type_=sa.Text(), postgresql_using=f'"{old}"::text')
            else:
                with op.batch_alter_table(table) as batch:
                    batch.alter_column(new, new_column_name=old, type_=sa.Text(), existing_nullable=nullable)
    for table, column, name, _values, length in ENUM_COLUMNS:
        if postgres:
            op.alter_column(table, column, type_=sa.String(length), postgresql_using=f'"{column}"::text')
            sa.Enum(name=name).drop(bind, checkfirst=True)
        else:
            with op.batch_alter_table(table) as batch:
                batch.alter_column(column, type_=sa.String(length))
    if postgres:
        op.execute("ALTER TABLE processed_event ALTER COLUMN status SET DEFAULT 'done'")
        op.execute("ALTER TABLE processed_event ALTER COLUMN attempts SET DEFAULT 1")
