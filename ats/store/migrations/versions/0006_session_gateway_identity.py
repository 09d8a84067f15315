"""Sessions record the gateway they traded against (issue 17, finding 2).

``sessions.gateway_info``: JSON of :class:`ats.gateway.identity.GatewayIdentity` — ``kind``
(``simulator`` / ``gateway`` / ``unknown``), the server version, the gateway clock's offset from
ours at the start and its speed over the session.  Sessions from before this migration have NULL:
they are ``unknown`` and never count as real paper evidence.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("gateway_info", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("gateway_info")
