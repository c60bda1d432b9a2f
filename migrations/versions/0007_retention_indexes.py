"""retention indexes: agents' events, finished commands and audit rows, oldest first

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:40:00

The retention sweep (app/retention.py) deletes these in small batches every pass; without an
index on their age each pass would scan the whole table to find the oldest few.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index('ix_events_agent_created', 'events', ['created_at'],
                    postgresql_where=sa.text("subject_type = 'agent'"))
    op.create_index('ix_commands_finished', 'agent_commands', ['finished_at'],
                    postgresql_where=sa.text("status IN ('completed','failed')"))
    op.create_index('ix_audit_created', 'audit_log', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_audit_created', table_name='audit_log')
    op.drop_index('ix_commands_finished', table_name='agent_commands')
    op.drop_index('ix_events_agent_created', table_name='events')
