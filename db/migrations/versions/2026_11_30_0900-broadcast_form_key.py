"""broadcast.form_key: one draft per web admin form, however often it is submitted

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.add_column(sa.Column("form_key", sa.String(length=48), nullable=True))
        batch_op.create_index("ix_broadcast_form_key", ["form_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("broadcast", schema=None) as batch_op:
        batch_op.drop_index("ix_broadcast_form_key")
        batch_op.drop_column("form_key")
