"""job list indexes: each filter of GET /jobs walks its own index in page order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 04:50:00

With a million jobs, a list filtered by a rare status or kind walked the tenant's whole
(created_at, id) index, filtering row by row (seconds for `status=queued`); a card's
list sorted its jobs. Each filter now has an index in keyset order, so a page reads
`limit + 1` entries wherever the cursor points (bench/RESULTS.md, large-table section).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_ORDER = [sa.text('created_at DESC'), sa.text('id DESC')]


def upgrade() -> None:
    op.create_index('ix_jobs_tenant_status_created', 'jobs', ['tenant_id', 'status', *_ORDER])
    op.create_index('ix_jobs_tenant_kind_created', 'jobs', ['tenant_id', 'kind', *_ORDER])
    op.create_index('ix_jobs_tenant_card_created', 'jobs', ['tenant_id', 'card_id', *_ORDER])
    op.drop_index('ix_jobs_tenant_card', table_name='jobs')


def downgrade() -> None:
    op.create_index('ix_jobs_tenant_card', 'jobs', ['tenant_id', 'card_id'])
    op.drop_index('ix_jobs_tenant_card_created', table_name='jobs')
    op.drop_index('ix_jobs_tenant_kind_created', table_name='jobs')
    op.drop_index('ix_jobs_tenant_status_created', table_name='jobs')
