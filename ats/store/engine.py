"""Engine creation, connection pragmas, the write lock and automatic migration."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ats.core.errors import StoreError

if TYPE_CHECKING:
    import sqlite3

    from sqlalchemy.pool import ConnectionPoolEntry

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Advisory-lock keys on PostgreSQL (arbitrary, fixed).
_PG_WRITE_LOCK = 0x617473_01  # serialises audit appends
_PG_MIGRATE_LOCK = 0x617473_02

_ON_COMMIT = "ats_on_commit"  # key in a connection's .info: callbacks to run after commit

_engines: dict[str, Store] = {}
_engines_lock = threading.Lock()


def utcnow_iso() -> str:
    """Current UTC time as ISO-8601 with microseconds and a ``Z`` suffix (sortable text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    """One database: an engine plus the two kinds of transaction ats needs.

    ``read()`` is a plain transaction.  ``write()`` is a *serialised* write transaction:
    ``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL, so that
    read-head-then-append sequences (the audit chain) never interleave across processes.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.url = engine.url
        self._secret_url = engine.url.render_as_string(hide_password=False)  # only to scrub error messages

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store read failed: {_short(exc, self._secret_url)}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialised write transaction; the callbacks registered with :func:`on_commit`
        inside it run once it has committed (never after a rollback)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(ats_begin="IMMEDIATE")
                conn.info.pop(_ON_COMMIT, None)  # left over from a transaction not opened here
                try:
                    with conn.begin():
                        if self.dialect == "postgresql":
                            # Bounded like SQLite's busy timeout: a client stuck holding the lock
                            # (a lost network mid-transaction) must not hang `ats kill` or a session.
                            conn.execute(text(f"SET LOCAL lock_timeout = '{int(WRITE_LOCK_TIMEOUT_S * 1000)}ms'"))
                            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_WRITE_LOCK})
                        yield conn
                finally:
                    callbacks = conn.info.pop(_ON_COMMIT, {})
        except SQLAlchemyError as exc:
            detail = _short(exc, self._secret_url)
            if "lock timeout" in detail or "database is locked" in detail:
                where = ("pg_stat_activity shows it" if self.dialect == "postgresql"
                         else "another process has the database file open in a write")
                detail += f" (another connection held the store's write lock for {WRITE_LOCK_TIMEOUT_S:g} s: {where})"
            raise StoreError(f"store write failed: {detail}") from exc
        for callback in callbacks.values():
            callback()

    def dispose(self) -> None:
        self.engine.dispose()


def on_commit(conn: Connection, name: str, callback: Callable[[], object]) -> None:
    """Run ``callback`` after the :meth:`Store.write` transaction of ``conn`` commits.

    One callback per ``name``: a later registration replaces an earlier one (the audit anchor
    only needs the newest head of a transaction that appended several rows).
    """
    conn.info.setdefault(_ON_COMMIT, {})[name] = callback


def inserted_id(result: CursorResult[Any]) -> int:
    """The integer primary key (``id``) of the row an ``INSERT`` just wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("the insert returned no primary key")
    return key[0]


# How long a write waits for another writer (SQLite's busy timeout, PostgreSQL's lock_timeout)
# before it fails with a StoreError.
WRITE_LOCK_TIMEOUT_S = 60.0


def _short(exc: BaseException, url: str = "") -> str:
    """The first line of a driver error, with the store URL's secrets scrubbed from it (a driver
    may echo the host part it parsed, password and all)."""
    from ats.core.masking import scrub_url_secrets

    return scrub_url_secrets(str(getattr(exc, "orig", exc) or exc).splitlines()[0], url)


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {folder}, the directory of the SQLite store ({exc.strerror or exc}): "
                                 "point ATS_DATA_DIR (or ATS_DATABASE_URL) at a directory that can be created") from None
        engine = create_engine(url, connect_args={"timeout": WRITE_LOCK_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred-only).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=FULL")  # durable: a commit survives power loss
            cursor.execute(f"PRAGMA busy_timeout={int(WRITE_LOCK_TIMEOUT_S * 1000)}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("ats_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())

        return engine
    return create_engine(url, pool_pre_ping=True)


def _migrate(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    known = {revision.revision for revision in script.walk_revisions()}

    def check_known(current: str | None) -> None:
        # Alembic's "Can't locate revision" traceback otherwise: this ats is older than the database.
        if current is not None and current not in known:
            raise StoreError(f"the database was migrated by a newer ats (revision {current}; this ats knows up to "
                             f"{head}): upgrade ats")

    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    check_known(current)
    with _migration_lock(engine), engine.begin() as conn:
        check_known(MigrationContext.configure(conn).get_current_revision())  # another process may have migrated
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database + ".migrate.lock")
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATE_LOCK})
                conn.commit()


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """The :class:`Store` for ``url`` (default: from settings), migrated to head on first use.

    Cached per URL within a process.  Raises :class:`StoreError` when the database cannot
    be reached or migrated.
    """
    if url is None:
        from ats.core.settings import get_settings

        url = get_settings().resolved_database_url
    with _engines_lock:
        store = _engines.get(url)
        if store is not None:
            return store
        try:
            engine = _create_engine(url)
            if migrate:
                _migrate(engine)
        except OperationalError as exc:
            raise StoreError(f"cannot open the store at {safe_url(url)}: {_short(exc, url)}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"store migration failed at {safe_url(url)}: {_short(exc, url)}") from exc
        store = Store(engine)
        _engines[url] = store
        return store


def upgrade(url: str | None = None) -> str:
    """Apply every migration (``ats db upgrade``); returns the head revision."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    open_store(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head() or ""


def forget_stores() -> None:
    """Dispose and forget every cached engine (tests; after a fork)."""
    with _engines_lock:
        for store in _engines.values():
            store.dispose()
        _engines.clear()


def safe_url(url: str) -> str:
    """The URL as it may be shown: its password and secret query parameters hidden."""
    from ats.core.masking import display_url

    return display_url(url)
