"""blind A/B comparisons, the project setting that requires one before promote, summaries' places

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 18:00:00.000000

Three new tables: a comparison of versions (where its items are posted, the seed that drew them, its
result once closed), its items (an input and two versions' outputs in the order shown as A and B) and
reviewers' reactions on them. ``project.require_ab`` (false for existing projects) makes promote
refuse a version that has not won a closed comparison against production; ``model_version`` keeps
where its evaluation summary was posted (``summary_channel_id``, ``summary_ts``) so a result can be
shown on it.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), 'postgresql')
ENUMS = {
    'comparisonstatus': ('open', 'closed'),
    'abchoice': ('a', 'b', 'tie'),
}


def _enum(name):
    return sa.Enum(*ENUMS[name], name=name)


def upgrade() -> None:
    with op.batch_alter_table('project') as batch:
        batch.add_column(sa.Column('require_ab', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('project') as batch:  # the default only filled the existing rows
        batch.alter_column('require_ab', server_default=None, existing_type=sa.Boolean(), existing_nullable=False)
    with op.batch_alter_table('model_version') as batch:
        batch.add_column(sa.Column('summary_channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch.add_column(sa.Column('summary_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))

    op.create_table('comparison',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('status', _enum('comparisonstatus'), nullable=False),
    sa.Column('version_ids', JSON, nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('votes_needed', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('thread_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('result_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('closed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('result', JSON, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('comparison', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_comparison_status'), ['status'], unique=False)

    op.create_table('comparison_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comparison_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('input_text', sa.Text(), nullable=False),
    sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version_a_id', sa.Integer(), nullable=False),
    sa.Column('version_b_id', sa.Integer(), nullable=False),
    sa.Column('prediction_a_id', sa.Integer(), nullable=False),
    sa.Column('prediction_b_id', sa.Integer(), nullable=False),
    sa.Column('message_ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['comparison_id'], ['comparison.id'], ),
    sa.ForeignKeyConstraint(['prediction_a_id'], ['prediction.id'], ),
    sa.ForeignKeyConstraint(['prediction_b_id'], ['prediction.id'], ),
    sa.ForeignKeyConstraint(['version_a_id'], ['model_version.id'], ),
    sa.ForeignKeyConstraint(['version_b_id'], ['model_version.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('comparison_id', 'position', name='uq_comparison_item_position')
    )
    with op.batch_alter_table('comparison_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_item_comparison_id'), ['comparison_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_comparison_item_message_ts'), ['message_ts'], unique=False)

    op.create_table('comparison_reaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('choice', _enum('abchoice'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['comparison_item.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'reviewer_id', 'choice', name='uq_comparison_reaction')
    )
    with op.batch_alter_table('comparison_reaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_comparison_reaction_item_id'), ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_table('comparison_reaction')
    op.drop_table('comparison_item')
    op.drop_table('comparison')
    if op.get_bind().dialect.name == 'postgresql':
        for name in ENUMS:
            op.execute(f'DROP TYPE IF EXISTS {name}')
    with op.batch_alter_table('model_version') as batch:
        batch.drop_column('summary_ts')
        batch.drop_column('summary_channel_id')
    with op.batch_alter_table('project') as batch:
        batch.drop_column('require_ab')
