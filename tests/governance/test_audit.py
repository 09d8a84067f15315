"""The audit log: append-only in the database, hash chain verified, concurrent appends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ats.core.errors import AuditChainBroken
from ats.core.settings import get_settings
from ats.governance import audit
from ats.store import Store, open_store
from ats.store.engine import forget_stores
from support import reap, run_ats


def _fill(store: Store, n: int) -> None:
    for i in range(n):
        audit.append("tester@host", f"test.action{i % 3}", f"subject-{i}", {"i": i, "text": "é"}, store=store)


def test_append_builds_a_chain_that_verifies(store_url: str) -> None:
    store = open_store(store_url)

    _fill(store, 5)
    result = audit.verify(store)

    rows = audit.list_rows(store=store)
    assert result.rows == 5
    assert result.head_hash == rows[-1].hash
    assert rows[0].prev_hash == audit.GENESIS_HASH
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert rows[2].payload_obj() == {"i": 2, "text": "é"}


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
    "DELETE FROM audit_log WHERE seq = 1",
])
def test_database_refuses_update_and_delete(store_url: str, statement: str) -> None:
    store = open_store(store_url)
    _fill(store, 2)

    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))

    assert audit.verify(store).rows == 2


def test_postgres_refuses_truncate(pg_url: str) -> None:
    store = open_store(pg_url)
    _fill(store, 2)

    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))

    assert audit.verify(store).rows == 2


def test_approval_events_are_append_only_too(store_url: str) -> None:
    store = open_store(store_url)
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO approval_events (kind, strategy, instrument, note, actor, at, fingerprint, audit_seq) "
            "VALUES ('approve', 's', 'A.B', 'n', 'a', 't', 'f', 1)"))

    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM approval_events"))


# --- tampering behind the triggers' back ------------------------------------------------------

CHAIN_LENGTH = 12


@contextmanager
def _triggers_dropped(store: Store) -> Iterator[None]:
    """Drop the append-only triggers, let the caller tamper, recreate them exactly."""
    with store.engine.begin() as conn:
        saved = [row[0] for row in conn.execute(text(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"))]
        names = [row[0] for row in conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"))]
        for name in names:
            conn.execute(text(f"DROP TRIGGER {name}"))
    yield
    with store.engine.begin() as conn:
        for sql in saved:
            conn.execute(text(sql))


def _edit(conn, k: int, field: str) -> int:  # noqa: ANN001
    conn.execute(text(f"UPDATE audit_log SET {field} = {field} || 'x' WHERE seq = :k"), {"k": k})
    return k


def _delete(conn, k: int) -> int:  # noqa: ANN001
    conn.execute(text("DELETE FROM audit_log WHERE seq = :k"), {"k": k})
    return k


def _shift_from(conn, k: int) -> None:  # noqa: ANN001
    conn.execute(text("UPDATE audit_log SET seq = -seq - 1 WHERE seq >= :k"), {"k": k})
    conn.execute(text("UPDATE audit_log SET seq = -seq WHERE seq < 0"))


def _insert(conn, k: int, forged: bool) -> int:  # noqa: ANN001
    """Insert a row at position k (renumbering the rest); ``forged`` gives it a valid hash (but,
    without the audit key, no HMAC: found at k itself)."""
    prev = conn.execute(text("SELECT hash FROM audit_log WHERE seq = :p"), {"p": k - 1}).scalar() or audit.GENESIS_HASH
    _shift_from(conn, k)
    ts, actor, action, subject, payload = "2026-01-01T00:00:00.000000Z", "mallory", "approval.approve", "x@Y.Z", "{}"
    digest = audit.row_hash(k, ts, actor, action, subject, payload, prev) if forged else "f" * 64
    conn.execute(text(
        "INSERT INTO audit_log (seq, ts, actor, action, subject, payload, prev_hash, hash) "
        "VALUES (:seq, :ts, :actor, :action, :subject, :payload, :prev, :hash)"),
        {"seq": k, "ts": ts, "actor": actor, "action": action, "subject": subject, "payload": payload,
         "prev": prev, "hash": digest})
    return k


def _swap(conn, k: int) -> int:  # noqa: ANN001
    """Swap the contents of rows k and k+1 (reordering)."""
    conn.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = :k"), {"k": k})
    conn.execute(text("UPDATE audit_log SET seq = :k WHERE seq = :k1"), {"k": k, "k1": k + 1})
    conn.execute(text("UPDATE audit_log SET seq = :k1 WHERE seq = -1"), {"k1": k + 1})
    return k


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """``values`` in os.environ (and fresh settings) for a module-scoped fixture, then restored."""
    from ats.core.settings import get_settings

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def pristine_chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A valid keyed chain on disk, with the key and the anchor it was written with."""
    base = tmp_path_factory.mktemp("chain")
    files = {"db": base / "pristine.sqlite3", "key": base / "config" / "audit.key",
             "anchor": base / "config" / "audit.anchor.json"}
    with _environment(ATS_AUDIT_KEY_FILE=str(files["key"]), ATS_AUDIT_ANCHOR_FILE=str(files["anchor"])):
        store = open_store(f"sqlite:///{files['db']}")
        _fill(store, CHAIN_LENGTH)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        store.dispose()
        forget_stores()
    return files


TAMPERINGS: dict[str, Callable[..., int]] = {
    "edit": _edit, "delete": _delete, "insert": _insert, "swap": _swap,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(TAMPERINGS)),
    k=st.integers(min_value=1, max_value=CHAIN_LENGTH),
    field=st.sampled_from(["ts", "actor", "action", "subject", "payload", "prev_hash", "hash", "hmac"]),
    forged=st.booleans(),
)
def test_verify_names_the_first_tampered_row(pristine_chain: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, kind: str, k: int,
                                             field: str, forged: bool) -> None:
    # Arrange: a copy of a valid chain (its key and anchor), tampered behind the triggers' back.
    monkeypatch.setenv("ATS_AUDIT_KEY_FILE", str(pristine_chain["key"]))
    monkeypatch.setenv("ATS_AUDIT_ANCHOR_FILE", str(pristine_chain["anchor"]))
    get_settings.cache_clear()
    path = tmp_path / f"{uuid.uuid4().hex}.sqlite3"
    shutil.copy(pristine_chain["db"], path)
    store = open_store(f"sqlite:///{path}")
    if kind == "swap":
        k = min(k, CHAIN_LENGTH - 1)
    if kind == "insert":
        k = min(k, CHAIN_LENGTH)  # k == CHAIN_LENGTH puts it before the last row
    with _triggers_dropped(store), store.engine.begin() as conn:
        if kind == "edit":
            expected = _edit(conn, k, field)
        elif kind == "insert":
            expected = _insert(conn, k, forged)
        else:
            expected = TAMPERINGS[kind](conn, k)

    # Act
    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    # Assert
    assert excinfo.value.seq == expected, excinfo.value.reason
    store.dispose()


def test_appending_a_forged_row_at_the_end_is_found_through_the_head(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 3)
    with store.engine.begin() as conn:
        _insert(conn, 4, forged=True)

    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    assert excinfo.value.seq == 4


def test_verify_finds_tampering_on_postgres(pg_url: str) -> None:
    store = open_store(pg_url)
    _fill(store, 6)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE audit_log SET payload = :p WHERE seq = 4"), {"p": '{"i":99}'})
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))

    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    assert excinfo.value.seq == 4
    # The reading connection went back to the pool at once, not when the collector finds it
    # (psycopg then warns that it was deleted while still open).
    assert store.engine.pool.checkedout() == 0


def test_a_chain_found_broken_mid_way_gives_its_connection_back(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 6)
    with _triggers_dropped(store), store.engine.begin() as conn:
        _edit(conn, 3, "actor")

    with pytest.raises(AuditChainBroken) as excinfo:
        audit.verify(store)

    assert excinfo.value.seq == 3
    assert store.engine.pool.checkedout() == 0


# --- CLI --------------------------------------------------------------------------------------

def test_cli_verify_intact_then_broken(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    _fill(store, 3)
    env = {"ATS_DATABASE_URL": sqlite_url}

    intact = run_ats("audit", "verify", env=env)
    with _triggers_dropped(store), store.engine.begin() as conn:
        _edit(conn, 2, "actor")
    broken = run_ats("audit", "verify", env=env)

    assert intact.returncode == 0 and "3 rows" in intact.stdout
    assert audit.list_rows(store=store)[-1].hash in intact.stdout
    assert broken.returncode == 4
    assert broken.stderr.strip() == "error: audit chain broken at seq 2: hash does not match the row's content"


def test_cli_list_filters_by_action_and_limit(sqlite_url: str) -> None:
    _fill(open_store(sqlite_url), 9)

    result = run_ats("audit", "list", "--action", "test.action1", "--limit", "2", "--json",
                     env={"ATS_DATABASE_URL": sqlite_url})

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["seq"], r["action"]) for r in rows] == [(5, "test.action1"), (8, "test.action1")]
    assert rows[0]["payload"] == {"i": 4, "text": "é"}


# --- concurrency ------------------------------------------------------------------------------

APPENDER = """
import sys
from ats.governance import audit
from ats.store import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # wait for the parent's "go": all four start appending together
for i in range(int(sys.argv[2])):
    audit.append(f"proc-{sys.argv[3]}", "test.concurrent", f"row-{i}", {"i": i}, store=store)
print("done", flush=True)
"""


@pytest.mark.timeout(300)
def test_four_processes_appending_keep_one_chain(store_url: str) -> None:
    open_store(store_url)  # migrate once before the race (first use also locks, but keep it simple)
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, store_url, "200", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    finally:
        for proc in procs:
            reap(proc)

    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert all("done" in out for out in outputs)
    result = audit.verify(open_store(store_url))
    assert result.rows == 800
    actors = {row.actor for row in audit.list_rows(store=open_store(store_url), limit=800)}
    assert actors == {"proc-0", "proc-1", "proc-2", "proc-3"}
