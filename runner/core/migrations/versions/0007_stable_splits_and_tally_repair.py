"""examples keep the side of the split they first took; projects remember an unsynced tally and a
root message that could not be posted

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01 09:00:00.000000

``example.split`` is filled in for examples already in a snapshot: the side they had in the first
snapshot that held them (by creation time), the one a model trained on that snapshot saw.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def _split_type(bind):
    if bind.dialect.name == 'postgresql':  # the enum type snapshot_example.split already uses
        return postgresql.ENUM('train', 'eval', name='split', create_type=False)
    return sa.Enum('train', 'eval', name='split')


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tally_dirty', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('root_error', sa.Text(), nullable=True))
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.alter_column('tally_dirty', server_default=None)
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.add_column(sa.Column('split', _split_type(bind), nullable=True))
    op.execute(
        """
        UPDATE example SET split = (
            SELECT se.split FROM snapshot_example se JOIN snapshot s ON s.id = se.snapshot_id
            WHERE se.example_id = example.id
            ORDER BY s.created_at, s.id
            LIMIT 1
        )
        """
    )


def downgrade() -> None:
    with op.batch_alter_table('example', schema=None) as batch_op:
        batch_op.drop_column('split')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('root_error')
        batch_op.drop_column('tally_dirty')
