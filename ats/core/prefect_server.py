"""A local ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME (its own SQLite).

Used by ``ats server`` (foreground, with the UI), and by the tests and benchmarks that need a
real Prefect server (runs from several processes recorded in one place, a real scheduler).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TextIO

from ats.core.localhost import free_port

STARTUP_TIMEOUT_S = 300.0  # a cold PREFECT_HOME on one slow core; the wait polls health
RUN_RETENTION_S = 90 * 24 * 3600
# Retention, Prefect's own (its database vacuum service, hourly): flow runs that ended more than
# RUN_RETENTION_S ago are deleted with their task runs, logs and artifacts; events after 7 days
# (Prefect's default).  Months of schedules do not grow the database without bound.  The compose
# file's Prefect server sets the same (tests/gateway/test_infra_compose.py checks it).
RETENTION_ENV = {"PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
                 "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(RUN_RETENTION_S)}


def api_answers(url: str, timeout: float = 2.0) -> bool:
    """Does a Prefect API answer its health check at ``url`` (``http://host:port/api``)?"""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


class LocalPrefectServer:
    """``with LocalPrefectServer(home) as server:`` — started, healthy, stopped on exit.

    ``server.url`` is the API URL (``http://127.0.0.1:PORT/api``); ``server.env()`` the variables
    a client process needs.  ``scheduler_loop_s`` shortens the scheduler's loop (tests).
    ``database_url`` (``postgresql+asyncpg://…``) puts Prefect's database there instead of a SQLite
    file in ``home``; ``auth_string`` (``user:password``) makes the API require it (clients send it
    as ``PREFECT_API_AUTH_STRING``, which :meth:`env` includes); ``server_env`` adds server
    settings or overrides them (retention is :data:`RETENTION_ENV`'s).
    """

    def __init__(self, home: Path, port: int = 0, *, ui: bool = False, scheduler_loop_s: float | None = None,
                 database_url: str | None = None, auth_string: str | None = None,
                 server_env: dict[str, str] | None = None) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.ui = ui
        self.scheduler_loop_s = scheduler_loop_s
        self.database_url = database_url
        self.auth_string = auth_string
        self.server_env = dict(server_env or {})
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self._log: TextIO | None = None

    def env(self) -> dict[str, str]:
        env = {"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.url,
               "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(self.port),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": str(self.ui).lower()}
        if self.scheduler_loop_s is not None:
            env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(self.scheduler_loop_s)
        if self.auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env

    def _server_only_env(self) -> dict[str, str]:
        env = {**RETENTION_ENV, **self.server_env}
        if self.database_url is not None:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        if self.auth_string is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        return env

    def healthy(self) -> bool:
        return api_answers(self.url)

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> LocalPrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._log = open(self.home / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.env(), **self._server_only_env()}, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                log = (self.home / "server.log").read_text()[-2000:]
                self.stop()
                raise RuntimeError(f"the Prefect server did not start: {log}")
            time.sleep(0.2)  # polling a process we just started; nothing to wait on instead
        self.startup_s = time.monotonic() - started
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
