"""notification engine: outbox urgency and expiry, send pacing, job runs, reminder marks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status IN ('pending_approval', 'confirmed', 'waitlisted', 'attended', 'offered')"


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, db.models.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "delivery_pace",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("next_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("slowdown", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_delivery_pace")),
    )
    op.create_table(
        "job_run",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", db.models.UTCDateTime(timezone=True), nullable=False),
        _when("last_started_at"),
        _when("last_finished_at"),
        sa.Column("last_outcome", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_run")),
    )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(_when("expires_at"))
        batch_op.add_column(sa.Column("group_key", sa.String(length=100), nullable=True))
    op.create_index("ix_outbox_message_group_key", "outbox_message", ["group_key"])
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.add_column(sa.Column("preferred_channel", sa.String(length=16), nullable=True))
    with op.batch_alter_table("channel_account", schema=None) as batch_op:
        batch_op.add_column(_when("unreachable_since"))
        batch_op.add_column(_when("next_send_at"))
    with op.batch_alter_table("training_class", schema=None) as batch_op:
        batch_op.add_column(sa.Column("online_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("announced", sa.JSON(), nullable=True))
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.add_column(_when("reminded_for"))
        batch_op.add_column(_when("head_alerted_at"))


def downgrade() -> None:
    with op.batch_alter_table("registration", schema=None) as batch_op:
        # Recreating the table loses the partial index's WHERE: rebuild it by hand.
        batch_op.drop_index("uq_registration_live_person_class")
        batch_op.drop_column("head_alerted_at")
        batch_op.drop_column("reminded_for")
        batch_op.create_index(
            "uq_registration_live_person_class",
            ["person_id", "class_id"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )
    with op.batch_alter_table("training_class", schema=None) as batch_op:
        batch_op.drop_column("announced")
        batch_op.drop_column("online_url")
    with op.batch_alter_table("channel_account", schema=None) as batch_op:
        batch_op.drop_column("next_send_at")
        batch_op.drop_column("unreachable_since")
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_column("preferred_channel")
    op.drop_index("ix_outbox_message_group_key", table_name="outbox_message")
    # Rows the newer engine skipped read as failed to the older one.
    op.execute("UPDATE outbox_message SET status = 'failed' WHERE status = 'skipped'")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_column("group_key")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("urgent")
    op.drop_table("job_run")
    op.drop_table("delivery_pace")
