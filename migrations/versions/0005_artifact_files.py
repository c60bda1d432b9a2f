"""artifact files: job_artifacts.path, body nullable

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 04:40:00.000000
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('job_artifacts', sa.Column('path', sa.String(length=500), nullable=True))
    op.alter_column('job_artifacts', 'body', existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Artifacts kept as files have no bytes in the row: they cannot go back.
    op.execute("DELETE FROM job_artifacts WHERE body IS NULL")
    op.alter_column('job_artifacts', 'body', existing_type=sa.LargeBinary(), nullable=False)
    op.drop_column('job_artifacts', 'path')
