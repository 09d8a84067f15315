"""A real local Prefect server for the flow tests (one per test session), and helpers.

``prefect server start`` on a free port with a PREFECT_HOME of its own (fresh SQLite): runs
made in-process and by subprocesses (``serve``, a paused go-live run) are all recorded there,
and its scheduler really creates scheduled runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))

from support import free_port  # noqa: E402

STARTUP_TIMEOUT_S = 90


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """The API URL of a real local Prefect server, stopped at the end of the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_SERVER_API_PORT": str(port), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {"url": url, "home": home}
    finally:
        # Send the flow-run logs still queued in this process before the server goes away.
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def prefect_api(prefect_server, monkeypatch: pytest.MonkeyPatch):
    """In-process flows of this test report to the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["url"])
    monkeypatch.setenv("PREFECT_HOME", str(prefect_server["home"]))
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["url"], PREFECT_HOME: prefect_server["home"]}):
        yield prefect_server["url"]
