"""training requests wait for a Confirm; runs keep who approved them over budget and their worker's class

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:00:00.000000

A new table, ``training_request``: what `/finetune train` asked for (snapshot, resolved config,
preflight estimate, the budget figures shown) until someone confirms or cancels it. ``training_run``
gains ``approved_by`` (the admin who let it go over the project's GPU-hour budget) and
``hardware_class`` (the class of the worker that trained it, for the throughput kept per class).
Downgrading drops pending requests; runs lose the two columns.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), 'postgresql')
REQUEST_STATUSES = ('pending', 'confirmed', 'cancelled')


def upgrade() -> None:
    op.create_table('training_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sa.Enum(*REQUEST_STATUSES, name='requeststatus'), nullable=False),
    sa.Column('config', JSON, nullable=False),
    sa.Column('estimate', JSON, nullable=False),
    sa.Column('budget', JSON, nullable=True),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('thread_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('message_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['training_run.id'], ),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshot.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_request_project_id'), ['project_id'], unique=False)
    with op.batch_alter_table('training_run') as batch:
        batch.add_column(sa.Column('approved_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('hardware_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('training_run') as batch:
        batch.drop_column('hardware_class')
        batch.drop_column('approved_by')
    with op.batch_alter_table('training_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_request_project_id'))
    op.drop_table('training_request')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TYPE IF EXISTS requeststatus')
