"""`mixsync_unreported_passes`: passes whose observation is not in the Dagster instance yet.

A pass finished by a sensor tick or a run records its observation there and then. One that
`mixsync sync` finished with nothing to run does not load Dagster (an unchanged pass stays as
cheap as its listing): it leaves its numbers here, and the sync's next sensor tick records one
observation per row and deletes the rows. Kept to the newest 1,000 per sync.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = sa.DateTime(timezone=True)
    op.create_table(
        "mixsync_unreported_passes",
        sa.Column("sync_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pass_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("started_at", dt, nullable=False),
        sa.Column("finished_at", dt, nullable=False),
        *(
            sa.Column(name, sa.BigInteger, nullable=False)
            for name in ("listed", "synced", "excluded", "failed", "deleted", "bytes")
        ),
    )


def downgrade() -> None:
    op.drop_table("mixsync_unreported_passes")
