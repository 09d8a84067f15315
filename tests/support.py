"""Helpers for tests (importable as ``support``: tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ats.core.localhost import free_port as free_port  # tests import both from here
from ats.core.localhost import wait_until as wait_until

_HELD_PORTS: list[socket.socket] = []


def refused_port() -> int:
    """A port on 127.0.0.1 that refuses connections for the rest of the test session.

    Its socket stays bound (never listening), so the OS gives the port to nobody else: a
    ``free_port()`` is only free until the next bind, and a simulator started on port 0 once got
    the very port a test had picked as its closed paper gateway (CI: "ATS_IB_LIVE_PORT must differ
    from ATS_IB_PAPER_PORT").  For a gateway that must stay down; never for one a test starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(sock)
    return int(sock.getsockname()[1])


def open_connections_to(port: int) -> int:
    """How many TCP connections this process holds open to 127.0.0.1:``port`` (any state but
    closed), read from the kernel (``/proc``): a socket no Python object still owns counts too."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    remote = f"0100007F:{port:04X}"
    with open("/proc/self/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[2] == remote and row[9] in inodes and row[3] != "07")  # 07: TCP_CLOSE


def run_ats(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m ats.cli``) in a subprocess with the test's environment."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "ats.cli", *args],
        capture_output=True, text=True, env=full_env, input=input,
        cwd=cwd or os.getcwd(), timeout=timeout,
    )


def reap(proc: subprocess.Popen | None, *readers: threading.Thread, timeout: float = 30) -> None:
    """End ``proc`` (SIGKILL if it still runs), join the threads reading its pipes, close the pipes.

    A pipe left open is only closed when the garbage collector finds the Popen, and its
    ResourceWarning then fails whichever test happens to run (``filterwarnings = error``): CI once
    blamed a simulator test for a runner test's stdout.  Every test that starts a process with a
    pipe ends it here (or through ``communicate()``, which closes them too)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=timeout)
    for reader in readers:
        reader.join(timeout=timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def later(hours: float = 2) -> str:
    """An ISO stop time well ahead (a session's ``--until``), whatever the time of day."""
    import datetime as dt

    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat(timespec="seconds")


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_postgres() -> None:
    """Skip the test when no PostgreSQL answers on 127.0.0.1:5432; in CI (CI=true) fail instead."""
    import socket

    import pytest

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return
    except OSError:
        pass
    if IN_CI:
        pytest.fail("PostgreSQL on 127.0.0.1:5432 does not answer (CI=true: required)")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 does not answer")


@contextlib.contextmanager
def postgres_database(prefix: str = "ats_test") -> Iterator[str]:
    """A new PostgreSQL database on 127.0.0.1:5432 (its name), dropped on exit, connections or not."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
