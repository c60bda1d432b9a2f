"""the scheduler: tenants' limits and weights, concurrency keys, admission, pauses

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:20:00

A job now holds a slot from its admission (`admitted_at`) until it ends. Jobs that were on
the broker or running when this migration runs are admitted as of then, so they keep their
slot; jobs that wait unsent are left for the scheduler's first pass.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

HOLDING = "admitted_at IS NOT NULL AND status IN ('queued','retrying','processing')"


def upgrade() -> None:
    op.add_column('tenants', sa.Column('weight', sa.Float(), nullable=True))
    op.add_column('tenants', sa.Column('max_running', sa.Integer(), nullable=True))
    op.add_column('tenants', sa.Column('max_priority', sa.SmallInteger(), nullable=True))
    op.add_column('tenants', sa.Column('key_limit', sa.Integer(), nullable=True))
    op.create_check_constraint('ck_tenants_weight', 'tenants', 'weight > 0')
    op.create_check_constraint('ck_tenants_max_running', 'tenants', 'max_running >= 0')
    op.create_check_constraint('ck_tenants_max_priority', 'tenants',
                               'max_priority BETWEEN 0 AND 9')
    op.create_check_constraint('ck_tenants_key_limit', 'tenants', 'key_limit >= 0')

    op.add_column('jobs', sa.Column('concurrency_key', sa.String(255), nullable=True))
    op.add_column('jobs', sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE jobs SET admitted_at = coalesce(dispatched_at, now()) "
        "WHERE status = 'processing' OR (status IN ('queued','retrying') "
        "AND dispatched_at IS NOT NULL)"
    )
    op.create_index(
        'ix_jobs_unadmitted', 'jobs',
        ['tenant_id', sa.text('priority DESC'), 'run_after', 'id'],
        postgresql_where=sa.text("admitted_at IS NULL AND status IN ('queued','retrying')"),
    )
    op.drop_index('ix_jobs_due', table_name='jobs')
    op.create_index(
        'ix_jobs_due', 'jobs', ['admitted_at'],
        postgresql_where=sa.text("dispatched_at IS NULL AND admitted_at IS NOT NULL"
                                 " AND status IN ('queued','retrying')"),
    )
    op.create_index('ix_jobs_holding', 'jobs', ['tenant_id', 'concurrency_key'],
                    postgresql_where=sa.text(HOLDING))

    op.create_table(
        'concurrency_limits',
        sa.Column('tenant_id', postgresql.UUID(as_uuid=True),
                  sa.ForeignKey('tenants.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('concurrency_key', sa.String(255), primary_key=True),
        sa.Column('max_running', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint('max_running >= 0', name='ck_concurrency_limits_max'),
    )
    op.create_table(
        'pauses',
        sa.Column('id', postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column('tenant_id', postgresql.UUID(as_uuid=True),
                  sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=True),
        sa.Column('kind', sa.String(64), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.CheckConstraint('tenant_id IS NOT NULL OR kind IS NOT NULL', name='ck_pauses_scope'),
        sa.UniqueConstraint('tenant_id', 'kind', name='uq_pauses_scope',
                            postgresql_nulls_not_distinct=True),
    )
    # Coalesces admission passes: every caller draws a ticket, the pass that holds the lock
    # runs again if a ticket was drawn after its own (app/scheduling/admission.py).
    op.execute("CREATE SEQUENCE admission_tickets")


def downgrade() -> None:
    op.execute("DROP SEQUENCE admission_tickets")
    op.drop_table('pauses')
    op.drop_table('concurrency_limits')
    op.drop_index('ix_jobs_holding', table_name='jobs')
    op.drop_index('ix_jobs_unadmitted', table_name='jobs')
    op.drop_index('ix_jobs_due', table_name='jobs')
    op.create_index('ix_jobs_due', 'jobs', ['run_after'],
                    postgresql_where=sa.text(
                        "dispatched_at IS NULL AND status IN ('queued','retrying')"))
    op.drop_column('jobs', 'admitted_at')
    op.drop_column('jobs', 'concurrency_key')
    for name in ('weight', 'max_running', 'max_priority', 'key_limit'):
        op.drop_constraint(f'ck_tenants_{name}', 'tenants')
        op.drop_column('tenants', name)
