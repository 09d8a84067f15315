"""A node stuck starting is not deaf (issue 17, finding 1).

Against a gateway that accepts TCP but never answers the handshake (the simulator's ``stall``
fault, or any non-IB listener), the IB adapter retries its connect forever.
Before the fix, ``ats kill``, the stop time, the startup deadline and one SIGTERM were all ignored
there, and the session row stayed ``running``.  Each test runs the real ``python -m ats.paper``
against such a gateway, acts once the session row exists and the node's TCP connection is held
unanswered, and checks the session ends (and is recorded) without the gateway ever answering.
"""

from __future__ import annotations

import datetime as dt
import signal
import socket
import threading
from pathlib import Path

import pytest
from fault_support import runner_env, start_runner, wait_until

from ats.governance import audit, killswitch
from ats.governance.sessions import list_sessions
from ats.store import open_store
from support import later, reap

pytestmark = pytest.mark.slow

SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]
# Generous: the process has to import Nautilus and probe the gateway first (slow on one core).
STUCK_TIMEOUT_S = 90.0


def _store(data_dir: Path):  # noqa: ANN202
    return open_store(f"sqlite:///{data_dir / 'ats.sqlite3'}")


def _wait_stuck_in_handshake(sim, data_dir: Path, proc) -> str:  # noqa: ANN001
    """Until the runner's session row exists and the node's connection is held by the stall."""
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the runner exited early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        return (data_dir / "ats.sqlite3").exists() and bool(list_sessions("paper", store=_store(data_dir))) \
            and sim.stalled_connections >= 1
    wait_until(ready, timeout=STUCK_TIMEOUT_S, what="the node stuck in the handshake")
    return list_sessions("paper", store=_store(data_dir))[0].id


def _ended(data_dir: Path, proc) -> tuple[int, str, str]:  # noqa: ANN001
    _, stderr = proc.communicate(timeout=STUCK_TIMEOUT_S)
    session = list_sessions("paper", store=_store(data_dir))[0]
    return proc.returncode, session.status, session.reason or stderr[-2000:]


def _start_against_a_stalled_gateway(sim_factory, data_dir: Path, *args: str):  # noqa: ANN001, ANN202
    sim = sim_factory(mode="paper", clock="manual")
    sim.stall(True)
    return sim, start_runner("ats.paper", [*SLEEVE, *args], runner_env(sim, data_dir))


def test_kill_switch_halts_a_session_stuck_in_the_handshake(sim_factory, tmp_path: Path) -> None:
    # Arrange
    data_dir = tmp_path / "data"
    sim, proc = _start_against_a_stalled_gateway(sim_factory, data_dir, "--until", later())
    try:
        session_id = _wait_stuck_in_handshake(sim, data_dir, proc)

        # Act
        killswitch.latch(["paper"], "stuck in the handshake", "test", store=_store(data_dir))
        code, status, reason = _ended(data_dir, proc)
    finally:
        reap(proc)

    # Assert: killed while the gateway still stalls, nothing left running, the halt audited.
    assert sim.api_connections == 0
    assert (code, status) == (5, "killed"), reason
    assert "stuck in the handshake" in reason
    halted = [r for r in audit.list_rows(action="session.halted", store=_store(data_dir)) if r.subject == session_id]
    assert halted and halted[0].payload_obj()["phase"] == "startup"
    assert list_sessions("paper", status="running", store=_store(data_dir)) == []


def test_one_sigterm_ends_a_session_stuck_in_the_handshake(sim_factory, tmp_path: Path) -> None:
    # Arrange
    data_dir = tmp_path / "data"
    sim, proc = _start_against_a_stalled_gateway(sim_factory, data_dir, "--until", later())
    try:
        _wait_stuck_in_handshake(sim, data_dir, proc)

        # Act: one SIGTERM, never a second
        proc.send_signal(signal.SIGTERM)
        code, status, reason = _ended(data_dir, proc)
    finally:
        reap(proc)

    # Assert
    assert (code, status) == (5, "killed"), reason
    assert "SIGTERM" in reason


def test_the_stop_time_ends_a_session_stuck_in_the_handshake(sim_factory, tmp_path: Path) -> None:
    # Arrange: an absolute stop time a minute ahead (generous: the runner must still be before
    # it when it starts, even on one slow core); the node is stuck when it comes
    data_dir = tmp_path / "data"
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    sim, proc = _start_against_a_stalled_gateway(sim_factory, data_dir, "--until", until.isoformat())
    try:
        _wait_stuck_in_handshake(sim, data_dir, proc)

        # Act: nothing but time
        code, status, reason = _ended(data_dir, proc)
    finally:
        reap(proc)

    # Assert
    assert (code, status) == (0, "stopped"), reason
    assert "before the node started trading" in reason
    assert dt.datetime.now(dt.UTC) >= until


@pytest.mark.parametrize("listener", ["stalled simulator", "non-IB listener"])
def test_the_startup_deadline_ends_a_session_that_never_connects(sim_factory, tmp_path: Path, listener: str) -> None:
    # Arrange: a 3 s startup deadline; the port holds a stalled simulator or a socket that
    # accepts and answers garbage (not the TWS API at all)
    data_dir = tmp_path / "data"
    if listener == "stalled simulator":
        sim = sim_factory(mode="paper", clock="manual")
        sim.stall(True)
        env = runner_env(sim, data_dir, ATS_SESSION_STARTUP_TIMEOUT_SECONDS="3")
        stop_listener = None
    else:
        port, stop_listener = _garbage_listener()
        env = {"ATS_DATA_DIR": str(data_dir), "ATS_IB_PAPER_PORT": str(port), "ATS_IB_PAPER_ACCOUNT_ID": "DU1234567",
               "ATS_GATEWAY_CONTROLLER": "docker", "ATS_SESSION_STARTUP_TIMEOUT_SECONDS": "3"}
    proc = start_runner("ats.paper", [*SLEEVE, "--until", later()], env)
    try:
        # Act
        code, status, reason = _ended_or_refused(data_dir, proc)
    finally:
        reap(proc)
        if stop_listener is not None:
            stop_listener()

    # Assert
    assert (code, status) == (1, "error"), reason
    assert "did not start trading within 3 s" in reason
    assert list_sessions("paper", status="running", store=_store(data_dir)) == []


def _ended_or_refused(data_dir: Path, proc) -> tuple[int, str, str]:  # noqa: ANN001
    _, stderr = proc.communicate(timeout=STUCK_TIMEOUT_S)
    sessions = list_sessions("paper", store=_store(data_dir)) if (data_dir / "ats.sqlite3").exists() else []
    if not sessions:
        return proc.returncode, "(no session)", stderr[-2000:]
    return proc.returncode, sessions[0].status, sessions[0].reason or ""


def _garbage_listener() -> tuple[int, callable]:
    """A TCP listener on 127.0.0.1 that answers every connection with an HTTP error and holds it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stopping = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()

    return server.getsockname()[1], stop
