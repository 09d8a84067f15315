"""Leases in the store: one holder at a time of a named long-running job, across processes and
machines (table ``leases``, migration 0008).

A holder :func:`acquire` s the lease for ``ttl``; it renews it by acquiring again before it
expires, and :func:`release` s it when done.  Another holder gets it only once it is released or
expired (the holder died without releasing it).  Each call is one serialised write transaction
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two contenders never both win.
Times are the store's ISO strings (fixed width, UTC), compared as text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from ats.store import Store
from ats.store.models import leases

HOLDER_MAX_CHARS = 200


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def acquire(store: Store, name: str, holder: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Take (or renew) lease ``name`` for ``holder`` until ``now + ttl``; False while another holds it."""
    holder = holder[:HOLDER_MAX_CHARS]
    now = now or datetime.now(UTC)
    values = {"holder": holder, "expires_at": _iso(now + ttl)}
    with store.write() as conn:
        row = conn.execute(select(leases).where(leases.c.name == name)).first()
        if row is None:
            conn.execute(leases.insert().values(name=name, acquired_at=_iso(now), **values))
            return True
        if row.holder != holder and row.expires_at > _iso(now):
            return False
        if row.holder != holder:
            values["acquired_at"] = _iso(now)
        conn.execute(leases.update().where(leases.c.name == name).values(**values))
        return True


def release(store: Store, name: str, holder: str) -> None:
    """Give lease ``name`` up, if ``holder`` still holds it."""
    with store.write() as conn:
        conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder[:HOLDER_MAX_CHARS]))


def holder_of(store: Store, name: str, now: datetime | None = None) -> str | None:
    """Who holds lease ``name`` now (None: free or expired)."""
    now = now or datetime.now(UTC)
    with store.read() as conn:
        row = conn.execute(select(leases).where(leases.c.name == name)).first()
    return row.holder if row is not None and row.expires_at > _iso(now) else None
