"""The store: SQLAlchemy 2 engine, schema (Alembic migrations) and helpers.

SQLite file under ``ATS_DATA_DIR`` by default (WAL, foreign keys on, durable commits),
PostgreSQL by ``ATS_DATABASE_URL=postgresql+psycopg://…``.  The schema is managed by the
migrations in ``ats/store/migrations``; :func:`open_store` applies them on first use (under a
file lock on SQLite, an advisory lock on PostgreSQL, so concurrent first uses are safe) and
``ats db upgrade`` applies them explicitly.
"""

from __future__ import annotations

from ats.store.engine import Store, open_store, utcnow_iso

__all__ = ["Store", "open_store", "utcnow_iso"]
