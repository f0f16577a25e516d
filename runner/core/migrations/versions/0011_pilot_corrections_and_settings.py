"""pilot corrections in words, reviewer weighting, shadow answers shown to reviewers, alert charts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:30:00.000000

A new table: a reviewer's correction of a pilot suggestion (their ❌ on it and their reply in its
thread with the right output, and what of it is counted). A project can weigh reviewers by their
estimated reliability (``project.weighted_consensus``, off for every existing project). A pilot's shadow
candidate can have its answers shown to the project's reviewers only (``pilot.shadow_shown``, off). A
drift alert records when its chart was uploaded (``drift_alert.chart_at``). Predictions are indexed by
their message (a reply in a pilot thread looks its suggestions up), corrections by their reply.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('correction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prediction_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('rejected', sa.Boolean(), nullable=False),
    sa.Column('reply_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('applied', sa.Text(), nullable=True),
    sa.Column('example_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['example_id'], ['example.id'], ),
    sa.ForeignKeyConstraint(['prediction_id'], ['prediction.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prediction_id', 'reviewer_id', name='uq_correction_reviewer')
    )
    with op.batch_alter_table('correction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_correction_prediction_id'), ['prediction_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_correction_reply_ts'), ['reply_ts'], unique=False)
    with op.batch_alter_table('prediction') as batch:  # replies in a pilot thread find its suggestions
        batch.create_index('ix_prediction_message', ['channel_id', 'message_ts'], unique=False)
    with op.batch_alter_table('project') as batch:
        batch.add_column(sa.Column('weighted_consensus', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('pilot') as batch:
        batch.add_column(sa.Column('shadow_shown', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('drift_alert') as batch:
        batch.add_column(sa.Column('chart_at', sa.DateTime(timezone=True), nullable=True))
    # The defaults only filled the existing rows.
    with op.batch_alter_table('project') as batch:
        batch.alter_column(
            'weighted_consensus', server_default=None, existing_type=sa.Boolean(), existing_nullable=False
        )
    with op.batch_alter_table('pilot') as batch:
        batch.alter_column('shadow_shown', server_default=None, existing_type=sa.Boolean(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('drift_alert') as batch:
        batch.drop_column('chart_at')
    with op.batch_alter_table('pilot') as batch:
        batch.drop_column('shadow_shown')
    with op.batch_alter_table('project') as batch:
        batch.drop_column('weighted_consensus')
    with op.batch_alter_table('prediction') as batch:
        batch.drop_index('ix_prediction_message')
    op.drop_table('correction')
