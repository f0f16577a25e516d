"""pilots, predictions and drift alerts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00.000000

Three new tables, nothing existing changes: a project's pilot (the channel whose new messages get
production's suggestion, and the candidate answering beside it in shadow), the predictions asked of versions (with their answers and reviews), and
the alerts raised on the version in production (acceptance dropped, predicted label mix shifted).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), 'postgresql')
ENUMS = {
    'predictionstatus': ('queued', 'running', 'done', 'failed'),
    'reviewoutcome': ('accepted', 'corrected'),
    'alertstatus': ('open', 'resolved'),
    'alertkind': ('acceptance', 'label_mix'),
}


def _enum(name):
    return sa.Enum(*ENUMS[name], name=name)


def upgrade() -> None:
    op.create_table('pilot',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('shadow_version_id', sa.Integer(), nullable=True),
    sa.Column('shadow_reported_id', sa.Integer(), nullable=True),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.ForeignKeyConstraint(['shadow_version_id'], ['model_version.id'], ),
    sa.PrimaryKeyConstraint('project_id')
    )
    with op.batch_alter_table('pilot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pilot_channel_id'), ['channel_id'], unique=False)

    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('message_ts', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('author_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('input_text', sa.Text(), nullable=False),
    sa.Column('shadow', sa.Boolean(), nullable=False),
    sa.Column('status', _enum('predictionstatus'), nullable=False),
    sa.Column('output_text', sa.Text(), nullable=True),
    sa.Column('label', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('model_seconds', sa.Float(), nullable=True),
    sa.Column('batch_size', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('suggestion_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('example_id', sa.Integer(), nullable=True),
    sa.Column('outcome', _enum('reviewoutcome'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['example_id'], ['example.id'], ),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'version_id', 'channel_id', 'message_ts', name='uq_prediction_message')
    )
    with op.batch_alter_table('prediction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prediction_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prediction_version_id'), ['version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_prediction_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_prediction_suggestion_ts'), ['suggestion_ts'], unique=False)

    op.create_table('drift_alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('kind', _enum('alertkind'), nullable=False),
    sa.Column('status', _enum('alertstatus'), nullable=False),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('message_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('resolution', sa.Text(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.ForeignKeyConstraint(['version_id'], ['model_version.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'version_id', 'revision', 'kind', name='uq_drift_alert_move')
    )
    with op.batch_alter_table('drift_alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drift_alert_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_drift_alert_status'), ['status'], unique=False)


def downgrade() -> None:
    op.drop_table('drift_alert')
    op.drop_table('prediction')
    op.drop_table('pilot')
    if op.get_bind().dialect.name == 'postgresql':
        for name in ENUMS:
            op.execute(f'DROP TYPE IF EXISTS {name}')
