"""One running session overall, not per mode.

Paper and live share the IB login and IB allows one session at a time: a paper session must not
run beside a live one (a scheduled paper run would otherwise swap the live gateway away under a
live session).  The partial unique index now covers every running row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ux_sessions_one_running_per_mode", table_name="sessions")
    op.create_index(
        "ux_sessions_one_running", "sessions", ["status"], unique=True,
        sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ux_sessions_one_running", table_name="sessions")
    op.create_index(
        "ux_sessions_one_running_per_mode", "sessions", ["mode"], unique=True,
        sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"),
    )
