"""Fixtures shared by the whole suite: an isolated environment, stores on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No ATS_* variable leaks in from the developer's shell; a fresh data dir per test."""
    for key in list(os.environ):
        if key.upper().startswith("ATS_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "ats-data"
    monkeypatch.setenv("ATS_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    from ats.settings import get_settings
    from ats.store.engine import forget_stores

    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()
    forget_stores()


def _postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards.

    Skips when no server answers on 127.0.0.1:5432, except in CI (CI=true), where it fails.
    """
    if not _postgres_answers():
        if IN_CI:
            pytest.fail("PostgreSQL on 127.0.0.1:5432 does not answer (CI=true: required)")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 does not answer")
    import psycopg

    name = f"ats_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from ats.store.engine import forget_stores

        forget_stores()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
def sim_gateway(sim_factory):
    """One paper simulator with the defaults of ``sim_factory``."""
    return sim_factory()
