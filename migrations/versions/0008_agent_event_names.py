"""agent event names follow domain.action.state: agent.created -> agent.create.completed, ...

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:40:00

Every event type is `domain.action.state` now. Stored events keep their meaning under the new
name, so a replay after the upgrade shows one vocabulary; the downgrade puts the old names back.
The statement touches only agent events (subject_type = 'agent'), in one transaction.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

RENAMES = {
    'agent.created': 'agent.create.completed',
    'agent.updated': 'agent.update.completed',
    'agent.deleted': 'agent.delete.completed',
}


def _rename(pairs: dict[str, str]) -> None:
    rename = sa.text(
        "UPDATE events SET event_type = :new WHERE subject_type = 'agent' AND event_type = :old"
    )
    for old, new in pairs.items():
        op.execute(rename.bindparams(old=old, new=new))


def upgrade() -> None:
    _rename(RENAMES)


def downgrade() -> None:
    _rename({new: old for old, new in RENAMES.items()})
