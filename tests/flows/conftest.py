"""A real local Prefect server for the flow tests (one per test session), and helpers.

``prefect server start`` on a free port with a PREFECT_HOME of its own (fresh SQLite): runs
made in-process and by subprocesses (``serve``, a paused go-live run) are all recorded there,
and its scheduler really creates scheduled runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trading"))


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """The API URL of a real local Prefect server, stopped at the end of the session."""
    from ats.core.prefect_server import LocalPrefectServer

    server = LocalPrefectServer(tmp_path_factory.mktemp("prefect-home"), scheduler_loop_s=5).start()
    try:
        yield {"url": server.url, "home": server.home}
    finally:
        # Send the flow-run logs still queued in this process before the server goes away.
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        server.stop()


@pytest.fixture
def prefect_api(prefect_server, monkeypatch: pytest.MonkeyPatch):
    """In-process flows of this test report to the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["url"])
    monkeypatch.setenv("PREFECT_HOME", str(prefect_server["home"]))
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"], PREFECT_HOME: prefect_server["home"]}):
        yield prefect_server["url"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Flow tests may take minutes: the first to ask for the session's Prefect server pays for its
    start (up to STARTUP_TIMEOUT_S on a cold PREFECT_HOME), and flows run real sessions and deployments."""
    from ats.core.prefect_server import STARTUP_TIMEOUT_S

    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(STARTUP_TIMEOUT_S + 180))
