"""deployments as recorded moves with a state; versions rolled back from; the status Slack shows

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:00:00.000000

Existing deployments were all carried out, so they become "done". A version that production was
rolled back from is marked "rolled_back". The production alias gets the id of the move under way
(none now). Training runs remember which status their Slack message shows: existing runs show
their current one. Downgrading turns "rolled_back" versions back into candidates and forgets
deployments that never moved the alias.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OLD_VERSION_STATUSES = ('candidate', 'discarded')
VERSION_STATUSES = (*OLD_VERSION_STATUSES, 'rolled_back')
DEPLOY_STATES = ('pending', 'committed', 'done', 'failed', 'reverted')


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    deploy_state = sa.Enum(*DEPLOY_STATES, name='deploystate')
    if postgres:
        deploy_state.create(bind, checkfirst=True)
    _version_statuses(postgres, OLD_VERSION_STATUSES, VERSION_STATUSES)
    _mark_rolled_back()
    with op.batch_alter_table('deployment') as batch:
        batch.add_column(sa.Column('state', deploy_state, nullable=False, server_default='done'))
        batch.add_column(sa.Column('owner', sa.String(length=128), nullable=False, server_default=''))
        batch.add_column(sa.Column('owner_since', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('detail', sa.Text(), nullable=False, server_default=''))
        batch.add_column(sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('deployment') as batch:  # the defaults only filled the existing rows
        batch.alter_column('state', server_default=None, existing_type=deploy_state, existing_nullable=False)
        batch.alter_column('owner', server_default=None, existing_type=sa.String(length=128),
                           existing_nullable=False)
        batch.alter_column('detail', server_default=None, existing_type=sa.Text(), existing_nullable=False)
        batch.create_index('ix_deployment_state', ['state'])
    with op.batch_alter_table('production_alias') as batch:
        batch.add_column(sa.Column('pending_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('training_run') as batch:
        batch.add_column(sa.Column('shown_status', sa.String(length=16), nullable=True))
    op.execute("UPDATE training_run SET shown_status = status WHERE status_ts IS NOT NULL")


def _mark_rolled_back() -> None:
    """Every version a rollback moved production away from (run after the enum value exists)."""
    op.execute(
        "UPDATE model_version SET status = 'rolled_back' WHERE status = 'candidate' AND id IN "
        "(SELECT previous_version_id FROM deployment WHERE action = 'rollback' "
        "AND previous_version_id IS NOT NULL)"
    )


def downgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    op.execute("DELETE FROM deployment WHERE state IN ('pending', 'failed', 'reverted')")
    op.execute("UPDATE model_version SET status = 'candidate' WHERE status = 'rolled_back'")
    with op.batch_alter_table('training_run') as batch:
        batch.drop_column('shown_status')
    with op.batch_alter_table('production_alias') as batch:
        batch.drop_column('pending_id')
    with op.batch_alter_table('deployment') as batch:
        batch.drop_index('ix_deployment_state')
        batch.drop_column('finished_at')
        batch.drop_column('detail')
        batch.drop_column('owner_since')
        batch.drop_column('owner')
        batch.drop_column('state')
    if postgres:
        sa.Enum(name='deploystate').drop(bind, checkfirst=True)
    _version_statuses(postgres, VERSION_STATUSES, OLD_VERSION_STATUSES)


def _version_statuses(postgres: bool, old: tuple[str, ...], new: tuple[str, ...]) -> None:
    """Give model_version.status the values `new`. On PostgreSQL the type is replaced rather than
    extended (ALTER TYPE … ADD VALUE), so that the new value is usable in this same transaction."""
    if postgres:
        op.execute("ALTER TYPE versionstatus RENAME TO versionstatus_old")
        sa.Enum(*new, name='versionstatus').create(op.get_bind())
        op.execute(
            "ALTER TABLE model_version ALTER COLUMN status TYPE versionstatus USING status::text::versionstatus"
        )
        op.execute("DROP TYPE versionstatus_old")
        return
    with op.batch_alter_table('model_version') as batch:
        batch.alter_column(
            'status',
            type_=sa.Enum(*new, name='versionstatus'),
            existing_type=sa.Enum(*old, name='versionstatus'),
            existing_nullable=False,
        )
