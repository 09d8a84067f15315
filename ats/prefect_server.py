"""A local ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME (its own SQLite).

Used by ``ats server`` (foreground, with the UI), and by the tests and benchmarks that need a
real Prefect server (runs from several processes recorded in one place, a real scheduler).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPrefectServer:
    """``with LocalPrefectServer(home) as server:`` — started, healthy, stopped on exit.

    ``server.url`` is the API URL (``http://127.0.0.1:PORT/api``); ``server.env()`` the variables
    a client process needs.  ``scheduler_loop_s`` shortens the scheduler's loop (tests).
    """

    def __init__(self, home: Path, port: int = 0, *, ui: bool = False, scheduler_loop_s: float | None = None) -> None:
        self.home = Path(home)
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.ui = ui
        self.scheduler_loop_s = scheduler_loop_s
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0
        self._log = None

    def env(self) -> dict[str, str]:
        env = {"PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.url,
               "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(self.port),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": str(self.ui).lower()}
        if self.scheduler_loop_s is not None:
            env["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = str(self.scheduler_loop_s)
        return env

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> LocalPrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._log = open(self.home / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **self.env()}, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
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
