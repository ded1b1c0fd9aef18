"""unique class session start

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 03:03:18.751277
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Two sessions of one class with one start (never made by an import, which matches
    # on class and start) would stop the constraint: keep the first of each.
    op.execute(
        "DELETE FROM class_session WHERE id NOT IN "
        "(SELECT MIN(id) FROM class_session GROUP BY class_id, starts_at)"
    )
    # The unique constraint's index starts with class_id, so the index on it alone goes.
    with op.batch_alter_table("class_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_class_session_class_id"))
        batch_op.create_unique_constraint(
            batch_op.f("uq_class_session_class_id_starts_at"), ["class_id", "starts_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("class_session", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_class_session_class_id_starts_at"), type_="unique")
        batch_op.create_index(batch_op.f("ix_class_session_class_id"), ["class_id"], unique=False)
