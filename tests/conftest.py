"""Fixtures shared by the whole suite: an isolated environment, stores on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def no_real_config_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The audit key and anchor default to ``$XDG_CONFIG_HOME/ats``: never the real home's, even
    for a fixture or subprocess that builds its environment without the ATS_* variables."""
    config_home = tmp_path_factory.mktemp("xdg-config")
    saved = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(config_home)
    yield config_home
    if saved is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = saved


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No ATS_* variable leaks in from the developer's shell; a fresh data dir per test, and an
    audit key and anchor file of its own, outside that data dir (as ats requires)."""
    for key in list(os.environ):
        if key.upper().startswith("ATS_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "ats-data"
    monkeypatch.setenv("ATS_DATA_DIR", str(data_dir))
    key = tmp_path / "ats-config" / "audit.key"
    key.parent.mkdir(mode=0o700)
    # Made here, as on a machine that has used ats before: the one-line notice of its creation
    # would otherwise be the first stderr line of whichever command a test runs first.
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    monkeypatch.setenv("ATS_AUDIT_KEY_FILE", str(key))
    monkeypatch.setenv("ATS_AUDIT_ANCHOR_FILE", str(tmp_path / "ats-config" / "audit.anchor.json"))
    monkeypatch.chdir(tmp_path)
    from ats.core.settings import get_settings
    from ats.store.engine import forget_stores

    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()
    forget_stores()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards.

    Skips when no server answers on 127.0.0.1:5432, except in CI (CI=true), where it fails.
    """
    from support import postgres_database, require_postgres

    require_postgres()
    with postgres_database() as name:
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            from ats.store.engine import forget_stores

            forget_stores()


@pytest.fixture
def sqlite_url(isolated_env: Path) -> str:
    return f"sqlite:///{isolated_env / 'ats.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sim_factory():
    """``sim_factory(**kwargs)`` starts IB Gateway simulators in-process; all are stopped after.

    Defaults: paper mode (account ``DU1234567``; live ``U1234567``), the shipped QQQ.NASDAQ bars,
    a manual clock at 2024-06-03, 100 000 USD, a free port and a control port.
    """
    from ats.ibsim import SimGateway

    started = []

    def make(**kwargs):
        kwargs.setdefault("mode", "paper")
        kwargs.setdefault("start", "2024-06-03")
        kwargs.setdefault("control_port", 0)
        sim = SimGateway(**kwargs)
        started.append(sim)
        return sim.start()

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def endpoint():
    """A local alert endpoint on 127.0.0.1 (``endpoint.url`` for ATS_ALERT_URLS); closed after the test."""
    from ats.core.alert_sink import AlertEndpoint

    server = AlertEndpoint()
    yield server
    server.close()


@pytest.fixture
def sim_gateway(sim_factory):
    """One paper simulator with the defaults of ``sim_factory``."""
    return sim_factory()


# Tests whose outcome could depend on how fast this machine starts a node, a runner process or
# Prefect (sessions of a given length, kills, outages, restarts).  tests/slow_machine.sh runs them
# on one core with a cold PREFECT_HOME; they wait on conditions, never on the clock.
TIMING_SENSITIVE_MODULES = {
    "test_fault_stuck_start", "test_fault_two_live_runs", "test_fault_gateway_drop", "test_fault_ibc_restart",
    "test_fault_sigkill_inflight", "test_runner_for_duration", "test_runner_live_gates", "test_runner_risk_kill",
    "test_runner_safety", "test_runner_restart", "test_flow_go_live_e2e", "test_flow_session_follows_run",
    "test_flow_kill_switch", "test_sessions_watch", "test_flow_gateway_watch", "test_health_watch",
    "test_fault_alert_endpoint_down", "test_flow_work_pool",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in TIMING_SENSITIVE_MODULES:
            item.add_marker(pytest.mark.timing)


@pytest.fixture(autouse=True)
def garbage_collected_after_a_timing_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A timing test's garbage is collected at its own teardown: a socket, pipe or client it left
    unclosed is reported (filterwarnings = error) at the test that left it, not at whichever later
    test — or the end of the session — the collector happens to run in.  (These tests start
    nodes, servers and threads; the collection costs milliseconds next to them.)"""
    yield
    if request.node.get_closest_marker("timing") is not None:
        import gc

        gc.collect()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop Prefect's ephemeral API server, if a test started one, while pytest's streams are
    still open: its own atexit stop logs to a stream pytest has closed by then ("Logging error …
    I/O operation on closed file" after every run)."""
    import sys

    if "prefect.server.api.server" not in sys.modules:
        return
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):  # Prefect's registry of them
        server.stop()
