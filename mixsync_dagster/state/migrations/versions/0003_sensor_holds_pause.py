"""Running vs paused moves to the Dagster instance (the sync's sensor); health columns.

- `PAUSED` is no longer a sync status: the sensor's state in the Dagster instance is the one
  source of truth for running vs paused. A sync that 0002 had PAUSED becomes ACTIVE (PENDING if
  it never finished a pass) with `pause_pending` set: its sensor stops itself at its next tick,
  so the pause the operator asked for is kept, now where the UI shows it.
- `paused_by` / `paused_at` mirror who stopped the sensor and when (for messages only).
- `last_listing_at` / `last_listing_error`: the latest listing by a sensor tick or
  `mixsync sync`, read by the `last_listing_succeeded` asset check.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = sa.DateTime(timezone=True)
    with op.batch_alter_table("mixsync_syncs") as t:
        t.add_column(sa.Column("paused_by", sa.Text))
        t.add_column(sa.Column("paused_at", dt))
        t.add_column(
            sa.Column("pause_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
        t.add_column(sa.Column("last_listing_at", dt))
        t.add_column(sa.Column("last_listing_error", sa.Text))
    syncs = sa.table(
        "mixsync_syncs",
        sa.column("status", sa.String),
        sa.column("passes_completed", sa.Integer),
        sa.column("updated_at", dt),
        sa.column("paused_by", sa.Text),
        sa.column("paused_at", dt),
        sa.column("pause_pending", sa.Boolean),
    )
    op.execute(
        syncs.update()
        .where(syncs.c.status == "PAUSED")
        .values(
            status=sa.case((syncs.c.passes_completed > 0, "ACTIVE"), else_="PENDING"),
            paused_by="mixsync pause (before the sensor held the pause)",
            paused_at=syncs.c.updated_at,
            pause_pending=True,
        )
    )


def downgrade() -> None:
    syncs = sa.table(
        "mixsync_syncs",
        sa.column("status", sa.String),
        sa.column("pause_pending", sa.Boolean),
    )
    op.execute(syncs.update().where(syncs.c.pause_pending.is_(True)).values(status="PAUSED"))
    with op.batch_alter_table("mixsync_syncs") as t:
        for name in ("last_listing_error", "last_listing_at", "pause_pending", "paused_at"):
            t.drop_column(name)
        t.drop_column("paused_by")
