"""One running session per mode, enforced by the database (a partial unique index).

IB allows one session per login and both nodes use the same API client id: two paper or two
live sessions at once must be impossible, even when two processes start them together.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ux_sessions_one_running_per_mode", "sessions", ["mode"], unique=True,
        sqlite_where=sa.text("status = 'running'"), postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ux_sessions_one_running_per_mode", table_name="sessions")
