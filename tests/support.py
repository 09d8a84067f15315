"""Helpers for tests (importable as ``support``: tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def later(hours: float = 2) -> str:
    """An ISO stop time well ahead (a session's ``--until``), whatever the time of day."""
    import datetime as dt

    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).isoformat(timespec="seconds")
