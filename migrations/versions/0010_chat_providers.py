"""chat providers: a tenant's named chat servers, their API keys encrypted

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00

`api_key_sealed` holds a Fernet token made with the first of PROVIDER_KEY_SECRETS (never the
key itself); null when the provider needs no key.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'chat_providers',
        sa.Column('id', postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column('tenant_id', postgresql.UUID(as_uuid=True),
                  sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('name', sa.String(63), nullable=False),
        sa.Column('base_url', sa.String(2000), nullable=False),
        sa.Column('api_key_sealed', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.UniqueConstraint('tenant_id', 'name', name='uq_chat_providers_name'),
    )


def downgrade() -> None:
    op.drop_table('chat_providers')
