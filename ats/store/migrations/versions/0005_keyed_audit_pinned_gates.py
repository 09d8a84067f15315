"""Keyed audit chain; paper verdicts and approvals pinned to params and bar spec.

Issue 17, findings 3 and 4:

* ``audit_log.hmac``: HMAC-SHA256, under a secret key kept in a file apart from the data
  (``ATS_AUDIT_KEY_FILE``), of the store id and the row's hash.  Someone who can write to the
  database but has not got the key can no longer recompute the chain from a row on.
* ``audit_head.store_id``: a random id of this store, covered by every HMAC (so it cannot be
  changed to dodge the anchor kept outside the database, which is filed under it);
  ``audit_head.keyed_from``: the first seq that must carry an HMAC.  Rows written before this
  migration have none and are verified by hash only ("rows before keying");
  ``audit_head.key_id``: which key the log is keyed with (a hash of the key, not the key), so a
  wrong or lost key file is refused with one line instead of silently starting a second key.
* ``approval_events.params`` / ``.bar_spec`` and ``rung_verdicts.bar_spec``: what an approval
  and a verdict are pinned to besides the code fingerprint.  Rows from before this migration
  have NULL there and admit no session: judge the paper rung and approve again.
* ``rung_verdicts`` becomes append-only like the audit log (triggers), and an approval event's
  ``audit_seq`` is unique (a replayed copy of an old approval row is refused by the database).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import uuid

import sqlalchemy as sa
from alembic import op

from ats.store.append_only import create_append_only_triggers

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("hmac", sa.String(64), nullable=True))
    op.add_column("audit_head", sa.Column("store_id", sa.String(32), nullable=True))
    op.add_column("audit_head", sa.Column("keyed_from", sa.Integer, nullable=True))
    op.add_column("audit_head", sa.Column("key_id", sa.String(32), nullable=True))
    op.get_bind().execute(
        sa.text("UPDATE audit_head SET store_id = :store_id, keyed_from = seq + 1 WHERE id = 1"),
        {"store_id": uuid.uuid4().hex},
    )
    op.add_column("approval_events", sa.Column("params", sa.Text, nullable=True))
    op.add_column("approval_events", sa.Column("bar_spec", sa.String(100), nullable=True))
    op.add_column("rung_verdicts", sa.Column("bar_spec", sa.String(100), nullable=True))
    op.create_index("ux_approval_events_audit_seq", "approval_events", ["audit_seq"], unique=True)
    create_append_only_triggers(op, "rung_verdicts")


def downgrade() -> None:
    raise RuntimeError("the audit log is append-only and keyed: this migration is not reversible")
