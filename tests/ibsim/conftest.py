"""Fixtures for tests that need a simulated IB Gateway (reusable by other test packages).

* ``sim_gateway`` / ``sim_factory`` come from ``tests/conftest.py`` (shared by every test package).
* ``ib_app``: ``ib_app(port, client_id=1)`` connects a stock ``ibapi`` client (reader thread
  running, callbacks recorded) and disconnects it at the end.
* ``sim_process``: ``sim_process(*cli_args)`` runs ``python -m ats.ibsim`` in a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ibsim_support import IBApp, SimProcess, start_sim_process


@pytest.fixture
def ib_app() -> Iterator[Callable[..., IBApp]]:
    apps: list[IBApp] = []

    def connect(port: int, client_id: int = 1) -> IBApp:
        app = IBApp().start(port, client_id)
        apps.append(app)
        return app

    yield connect
    for app in apps:
        app.close()


@pytest.fixture
def sim_process() -> Iterator[Callable[..., SimProcess]]:
    procs: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        proc = start_sim_process(*args)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
