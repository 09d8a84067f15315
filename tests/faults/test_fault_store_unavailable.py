"""The store failing when an order is about to be sent: the order never leaves (fail closed).

Two real PostgreSQL failures (the SQLite file cannot be made unwritable for root, so the store
is PostgreSQL here):

* the audit write of the order intent is refused: the session's database role loses its
  INSERT privilege on ``audit_log`` (privileges are checked on every statement, so the running
  session's pooled connections see it at once), while reads and the other tables keep working —
  so the failing write is exactly the intent, nothing else;
* the database goes away: every connection of the session terminated and new ones refused
  (``ALLOW_CONNECTIONS false``), as when the server is stopped or fails over, under a runner
  started through the real CLI.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fault_support import placed, run_scripted_session, runner_env, start_runner, wait_until
from runner_support import session_settings
from sqlalchemy.engine import make_url

from ats.core.sleeves import Sleeve
from ats.governance import audit
from ats.trading.runner import SessionRequest
from support import later, reap

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/{db}"
BUY_ONE = Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST", {"quantities": [1]})  # one market BUY on the first bar


def _admin(database: str, *statements: str) -> None:
    """Run ``statements`` as the superuser in ``database``."""
    with psycopg.connect(PG_ADMIN.format(db=database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def pg_role_url(pg_url: str) -> Iterator[str]:
    """The test's PostgreSQL database, owned by and reached as a role of its own (not a superuser)."""
    database = make_url(pg_url).database
    role = f"ats_fault_{uuid.uuid4().hex[:10]}"
    _admin("postgres", f'CREATE ROLE "{role}" LOGIN', f'ALTER DATABASE "{database}" OWNER TO "{role}"')
    try:
        yield f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}"
    finally:
        from ats.store.engine import forget_stores

        forget_stores()
        _admin("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{role}"')


def test_order_is_not_sent_when_its_audit_write_is_refused(sim_factory, isolated_env: Path, pg_role_url: str) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env, ATS_DATABASE_URL=pg_role_url)
    url = make_url(pg_role_url)

    def script(guard, store, results) -> None:  # noqa: ANN001
        # Act: the audit table stops taking rows, then the bar that makes the strategy buy arrives.
        _admin(url.database, f'REVOKE INSERT ON audit_log FROM "{url.username}"')
        sim.advance(1)
        wait_until(lambda: guard.halted_at is not None, what="the session to halt")

    driven = run_scripted_session(sim, settings, SessionRequest("paper", [BUY_ONE]), script, stop=False)

    # Assert: nothing reached the broker; the session ended in error saying why.
    outcome, store = driven.outcome, driven.store
    assert placed(sim) == []
    assert outcome.status == "error"
    assert re.match(r"audit write failed, order O-\S+ not sent \(fail closed\): store write failed: "
                    r"permission denied for table audit_log", outcome.reason), outcome.reason
    assert outcome.summary["orders"]["intent"] == 0  # the intent row went with the refused transaction
    assert "order.intent" not in [r.action for r in audit.list_rows(store=store, limit=1000)]


def test_database_gone_before_an_order_stops_the_cli_runner_non_zero(sim_factory, isolated_env: Path,
                                                                     pg_url: str) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    database = make_url(pg_url).database
    env = runner_env(sim, isolated_env, ATS_DATABASE_URL=pg_url)
    args = ["--strategy", "order_check", "--instrument", "QQQ.NASDAQ", "--params", '{"quantities": [1]}',
            "--until", later(), "--json"]
    runner = start_runner("ats.paper", args, env)
    try:
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the runner's bar subscription")

        # Act: the database refuses new connections and drops the open ones; the buying bar comes.
        _admin("postgres", f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false',
               f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        sim.advance(1)
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        reap(runner)
        _admin("postgres", f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    # Assert
    assert runner.returncode == 1, stderr
    outcome = json.loads(stdout)
    assert outcome["status"] == "error"
    # Whichever store access of the node came first (the order's audit write, the kill-switch
    # poll every 50 ms, the bar or telemetry record) failed closed and said so.
    assert re.match(r"(audit write failed, order O-\S+ not sent \(fail closed\)"
                    r"|store unavailable, cannot see the kill switch \(fail closed\)"
                    r"|store unavailable while (recording a bar|writing telemetry)): ", outcome["reason"]), outcome["reason"]
    assert "is not currently accepting connections" in outcome["reason"]
    assert "the session could not be marked error" in outcome["reason"]
    assert placed(sim) == []
    from ats.store import open_store

    actions = [r.action for r in audit.list_rows(store=open_store(pg_url), limit=1000)]
    assert actions[0] == "session.start" and "order.intent" not in actions
