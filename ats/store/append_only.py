"""Append-only tables: triggers that make the database itself refuse UPDATE and DELETE (and
TRUNCATE on PostgreSQL).  Used by the migrations (0001: audit log, approval events; 0005: rung
verdicts); kept out of the migration files so that every migration creates the same triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.operations import Operations


def create_append_only_triggers(op: Operations, table: str) -> None:
    """Create the triggers refusing UPDATE/DELETE (and TRUNCATE) on ``table``."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(sa.text(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            ))
    elif dialect == "postgresql":
        op.execute(sa.text(
            f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{table} is append-only: % refused', TG_OP; END $$"
        ))
        op.execute(sa.text(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        ))
        op.execute(sa.text(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
        ))
    else:  # pragma: no cover - we only support the two
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
