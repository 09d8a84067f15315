"""The store: migrations on first use, SQLite pragmas, `ats db upgrade`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from ats.store import open_store
from support import run_ats


def test_first_use_creates_the_schema(store_url: str) -> None:
    store = open_store(store_url)

    tables = set(inspect(store.engine).get_table_names())

    assert {"audit_log", "audit_head", "approval_events", "rung_verdicts", "alembic_version"} <= tables


def test_sqlite_store_uses_wal_and_foreign_keys(sqlite_url: str) -> None:
    store = open_store(sqlite_url)

    with store.read() as conn:
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()

    assert (journal, foreign_keys, synchronous) == ("wal", 1, 2)


def test_default_store_is_a_sqlite_file_under_the_data_dir(isolated_env: Path) -> None:
    result = run_ats("db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert (isolated_env / "ats.sqlite3").is_file()
    assert "revision 0008" in result.stdout


def test_db_upgrade_is_idempotent_on_postgres(pg_url: str) -> None:
    first = run_ats("db", "upgrade", env={"ATS_DATABASE_URL": pg_url})
    second = run_ats("db", "upgrade", env={"ATS_DATABASE_URL": pg_url})

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    with open_store(pg_url).read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"


def test_unreachable_database_is_one_clear_line() -> None:
    result = run_ats("audit", "verify", env={"ATS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the store at postgresql+psycopg://nobody@127.0.0.1:1/none")


@pytest.mark.parametrize("command", [("approvals",), ("sessions", "list"), ("audit", "verify")])
def test_a_data_dir_that_cannot_be_created_is_one_line_naming_it(command: tuple[str, ...]) -> None:
    result = run_ats(*command, env={"ATS_DATA_DIR": "/proc/ats-cannot-exist"})

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: cannot create /proc/ats-cannot-exist, the directory of the SQLite store (No such file or directory): "
        "point ATS_DATA_DIR (or ATS_DATABASE_URL) at a directory that can be created"]


@pytest.mark.parametrize("command", [("db", "upgrade"), ("approvals",)])
def test_a_database_migrated_by_a_newer_ats_is_one_line(isolated_env: Path, command: tuple[str, ...]) -> None:
    from ats.store.engine import forget_stores

    with open_store().write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    forget_stores()

    result = run_ats(*command)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the database was migrated by a newer ats (revision 0099; this ats knows up to 0008): upgrade ats"]


def test_models_match_the_migrated_schema(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ats.store.models import metadata

    store = open_store(store_url)

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)

    # Indexes are declared in the migrations only; tables and columns must agree exactly.
    assert [d for d in diff if d[0] not in ("add_index", "remove_index")] == []


def test_a_write_waits_a_bounded_time_for_a_stuck_writer_on_postgres(pg_url: str, monkeypatch) -> None:  # noqa: ANN001
    # Arrange: another connection holds the store's write lock and never lets go (a client that
    # lost its network mid-transaction); the wait is shortened for the test.
    from ats.core.errors import StoreError
    from ats.governance import audit
    from ats.store import engine as store_engine

    store = open_store(pg_url)
    audit.append("tester", "test.action", "before", store=store)
    monkeypatch.setattr(store_engine, "WRITE_LOCK_TIMEOUT_S", 0.5)
    holder = store.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": store_engine._PG_WRITE_LOCK})

    # Act
    try:
        with pytest.raises(StoreError) as excinfo:
            audit.append("tester", "test.action", "while stuck", store=store)
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": store_engine._PG_WRITE_LOCK})
        holder.close()

    # Assert: one line naming the wait; nothing half-written; the next write goes through.
    assert str(excinfo.value).startswith("store write failed: canceling statement due to lock timeout")
    assert "held the store's write lock for 0.5 s: pg_stat_activity shows it" in str(excinfo.value)
    assert audit.count(store) == 1
    audit.append("tester", "test.action", "after", store=store)
    assert audit.verify(store).rows == 2
