"""training runs can be paused and resumed from a checkpoint, and keep their preflight estimate

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 15:00:00.000000

``training_run.status`` gains ``paused``; a run remembers a pause asked of it (``control``), how many
times its job was enqueued again (``attempt``, for the job ids) and how many of those were automatic
resumes after its worker died (``auto_resumes``), its last checkpoint's step, and a note for its
status message, and the estimate made before it was queued (``estimate``, JSON). Downgrading turns
paused runs into cancelled ones.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

OLD_RUN_STATUSES = ('queued', 'running', 'finished', 'failed', 'cancelled')
RUN_STATUSES = (*OLD_RUN_STATUSES, 'paused')


def _run_statuses(postgres: bool, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Give training_run.status the values `new` (on PostgreSQL by replacing the type, so the new
    values are usable in this same transaction)."""
    if postgres:
        op.execute("ALTER TYPE runstatus RENAME TO runstatus_old")
        sa.Enum(*new, name='runstatus').create(op.get_bind())
        op.execute("ALTER TABLE training_run ALTER COLUMN status TYPE runstatus USING status::text::runstatus")
        op.execute("DROP TYPE runstatus_old")
        return
    with op.batch_alter_table('training_run') as batch:
        batch.alter_column(
            'status',
            type_=sa.Enum(*new, name='runstatus'),
            existing_type=sa.Enum(*old, name='runstatus'),
            existing_nullable=False,
        )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    _run_statuses(postgres, OLD_RUN_STATUSES, RUN_STATUSES)
    with op.batch_alter_table('training_run') as batch:
        batch.add_column(sa.Column('control', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('auto_resumes', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('checkpoint_step', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('estimate', sa.JSON().with_variant(JSONB(), 'postgresql'), nullable=True))
    with op.batch_alter_table('training_run') as batch:  # the defaults only filled the existing rows
        batch.alter_column('attempt', server_default=None, existing_type=sa.Integer(), existing_nullable=False)
        batch.alter_column(
            'auto_resumes', server_default=None, existing_type=sa.Integer(), existing_nullable=False
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    op.execute(
        "UPDATE training_run SET status = 'cancelled', error = 'Paused when the database was downgraded.' "
        "WHERE status = 'paused'"
    )
    with op.batch_alter_table('training_run') as batch:
        batch.drop_column('estimate')
        batch.drop_column('note')
        batch.drop_column('checkpoint_step')
        batch.drop_column('auto_resumes')
        batch.drop_column('attempt')
        batch.drop_column('control')
    _run_statuses(postgres, RUN_STATUSES, OLD_RUN_STATUSES)
