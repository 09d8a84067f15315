"""What an attacker with write access to the database (but not to the audit key or the anchor
file) can do, on SQLite and PostgreSQL: for the tests of issue 17, finding 4."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text

from ats.governance import audit
from ats.store import Store


@contextmanager
def triggers_off(store: Store, *tables: str) -> Iterator[Connection]:
    """A transaction in which the append-only triggers of ``tables`` do not fire (dropped and
    recreated exactly on SQLite, disabled on PostgreSQL)."""
    with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            for table in tables:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            yield conn
            for table in tables:
                conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            return
        saved = []
        for table in tables:
            rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
                                {"t": table}).all()
            for name, sql in rows:
                conn.execute(text(f"DROP TRIGGER {name}"))
                saved.append(sql)
        yield conn
        for sql in saved:
            conn.execute(text(sql))


def rewrite_from(store: Store, k: int, payload: str = '{"rewritten":true}') -> None:
    """Change row ``k``'s payload and recompute every hash from it on, and the head — all an
    attacker without the key can do (the HMACs stay as they were)."""
    with triggers_off(store, "audit_log") as conn:
        rows = conn.execute(text(
            "SELECT seq, ts, actor, action, subject, payload FROM audit_log WHERE seq >= :k ORDER BY seq"),
            {"k": k}).all()
        prev = conn.execute(text("SELECT hash FROM audit_log WHERE seq = :p"), {"p": k - 1}).scalar() or audit.GENESIS_HASH
        for seq, ts, actor, action, subject, body in rows:
            body = payload if seq == k else body
            digest = audit.row_hash(seq, ts, actor, action, subject, body, prev)
            conn.execute(text("UPDATE audit_log SET payload = :b, prev_hash = :p, hash = :h WHERE seq = :s"),
                         {"b": body, "p": prev, "h": digest, "s": seq})
            prev = digest
        conn.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})


def truncate_to(store: Store, last: int) -> None:
    """Delete every row after seq ``last`` and move ``audit_head`` back to it."""
    with triggers_off(store, "audit_log") as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq > :s"), {"s": last})
        digest = conn.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": last}).scalar()
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": last, "h": digest})


def insert_row(conn: Connection, table: str, values: dict) -> int:
    """A plain ``INSERT`` into ``table`` (no trigger touched), of the ``values`` whose columns the
    table has; returns the new row's id."""
    from sqlalchemy import inspect

    columns = {c["name"] for c in inspect(conn).get_columns(table)}
    kept = {k: v for k, v in values.items() if k in columns}
    names = ", ".join(kept)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + k for k in kept)})"), kept)
    return conn.execute(text(f"SELECT max(id) FROM {table}")).scalar()
