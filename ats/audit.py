"""The append-only, hash-chained audit log.

Each row: ``seq`` (1, 2, …), UTC ``ts``, ``actor``, ``action``, ``subject``, canonical-JSON
``payload``, ``prev_hash`` and ``hash`` = SHA-256 of :func:`canonical_row` (every field above,
length-prefixed, then ``prev_hash``).  The first row's ``prev_hash`` is 64 zeros.

The database refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL) with triggers created by
the migration.  Someone who goes around the triggers (drops them, edits, recreates them) is
caught by :func:`verify`, which walks the chain and names the first bad sequence number; the
``audit_head`` row, written in the same transaction as each append, also catches deletion of
the newest rows.

Appends are serialised across processes by :meth:`ats.store.Store.write` (``BEGIN IMMEDIATE``
on SQLite, an advisory lock on PostgreSQL), so concurrent writers keep one unbroken chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from ats.errors import AuditChainBroken, StoreError
from ats.store import Store, open_store, utcnow_iso
from ats.store.models import audit_head, audit_log

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditRow:
    """One audit row as stored."""

    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    payload: str
    prev_hash: str
    hash: str

    def payload_obj(self) -> Any:
        return json.loads(self.payload)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["payload"] = self.payload_obj()
        return data


@dataclass(frozen=True)
class VerifyResult:
    """An intact chain: how many rows and the head hash."""

    rows: int
    head_hash: str


def canonical_json(payload: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_row(seq: int, ts: str, actor: str, action: str, subject: str, payload: str,
                  prev_hash: str) -> bytes:
    """The bytes the row hash covers: each field length-prefixed (injective), then prev_hash."""
    parts = (str(seq), ts, actor, action, subject, payload, prev_hash)
    return "".join(f"{len(part)}:{part};" for part in parts).encode("utf-8")


def row_hash(seq: int, ts: str, actor: str, action: str, subject: str, payload: str,
             prev_hash: str) -> str:
    return hashlib.sha256(canonical_row(seq, ts, actor, action, subject, payload, prev_hash)).hexdigest()


def append_in(conn: Connection, actor: str, action: str, subject: str,
              payload: Any = None) -> AuditRow:
    """Append one row inside ``conn``, a transaction opened by :meth:`Store.write`.

    Use this to make a state change and its audit row one atomic commit.
    """
    head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    seq, prev = head.seq + 1, head.hash
    ts = utcnow_iso()
    body = canonical_json({} if payload is None else payload)
    digest = row_hash(seq, ts, actor, action, subject, body, prev)
    conn.execute(audit_log.insert().values(
        seq=seq, ts=ts, actor=actor, action=action, subject=subject, payload=body,
        prev_hash=prev, hash=digest))
    conn.execute(update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return AuditRow(seq, ts, actor, action, subject, body, prev, digest)


def append(actor: str, action: str, subject: str, payload: Any = None, *,
           store: Store | None = None) -> AuditRow:
    """Append one row in its own durable, serialised transaction."""
    store = store or open_store()
    with store.write() as conn:
        return append_in(conn, actor, action, subject, payload)


def list_rows(*, action: str | None = None, limit: int | None = None,
              store: Store | None = None) -> list[AuditRow]:
    """The newest ``limit`` rows (optionally of one ``action``), oldest first."""
    store = store or open_store()
    query = select(audit_log).order_by(audit_log.c.seq.desc())
    if action:
        query = query.where(audit_log.c.action == action)
    if limit:
        query = query.limit(limit)
    with store.read() as conn:
        rows = [AuditRow(**row._mapping) for row in conn.execute(query)]
    return rows[::-1]


def count(store: Store | None = None) -> int:
    store = store or open_store()
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(audit_log)).scalar_one()


def _iter_raw(store: Store, batch: int = 10_000) -> Iterator[tuple]:
    """Rows in ``seq`` order as plain tuples, straight from the driver (fast)."""
    columns = "seq, ts, actor, action, subject, payload, prev_hash, hash"
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(f"SELECT {columns} FROM audit_log ORDER BY seq")
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            cursor.close()
            conn.rollback()


def verify_rows(rows: Iterable[tuple], head: tuple[int, str] | None = None) -> VerifyResult:
    """Walk ``rows`` (seq-ordered tuples) and raise :class:`AuditChainBroken` at the first bad one.

    ``head`` is the ``(seq, hash)`` of the audit_head row, checked against the last row.
    """
    expected_seq, prev = 1, GENESIS_HASH
    sha256 = hashlib.sha256
    for seq, ts, actor, action, subject, payload, prev_hash, digest in rows:
        if seq != expected_seq:
            if seq > expected_seq:
                raise AuditChainBroken(expected_seq, f"row missing (next row present is seq {seq})")
            raise AuditChainBroken(seq, f"sequence out of order (expected {expected_seq})")
        if prev_hash != prev:
            raise AuditChainBroken(seq, "prev_hash does not match the previous row's hash")
        if sha256(canonical_row(seq, ts, actor, action, subject, payload, prev_hash)).hexdigest() != digest:
            raise AuditChainBroken(seq, "hash does not match the row's content")
        prev = digest
        expected_seq += 1
    rows_seen = expected_seq - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > rows_seen:
            raise AuditChainBroken(rows_seen + 1, f"row missing: the head says the log ends at seq {head_seq}")
        if head_seq < rows_seen:
            raise AuditChainBroken(head_seq + 1, f"row not recorded in the head (head ends at seq {head_seq})")
        if head_hash != prev:
            raise AuditChainBroken(max(rows_seen, 1), "the last row's hash does not match the head")
    return VerifyResult(rows_seen, prev)


def verify(store: Store | None = None) -> VerifyResult:
    """Verify the whole chain; raises :class:`AuditChainBroken` naming the first bad seq."""
    store = store or open_store()
    try:
        with store.read() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
        return verify_rows(_iter_raw(store), (head.seq, head.hash))
    except AuditChainBroken:
        raise
    except Exception as exc:  # driver errors while streaming
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"audit verify could not read the log: {exc}") from exc
