"""The probe against the IB Gateway simulator, and against small in-test listeners for what the
simulator does not do (a socket that never answers, a newer server version with protobuf)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from health_support import hold_client_id, read_exact, read_frame
from ibapi import comm

from ats.gateway.probe import PROBE_CLIENT_ID, account_problem, probe
from ats.ibsim import SimGateway
from support import free_port


@pytest.fixture
def paper_sim() -> Iterator[SimGateway]:
    sim = SimGateway(mode="paper", account="DU1234567", port=0).start()
    yield sim
    sim.stop()


@pytest.fixture
def live_sim() -> Iterator[SimGateway]:
    sim = SimGateway(mode="live", account="U7654321", port=0).start()
    yield sim
    sim.stop()


class Listener:
    """A TCP listener on 127.0.0.1 whose connections are handled by ``serve(conn)`` in a thread."""

    def __init__(self, serve: Callable[[socket.socket], None] | None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.served = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = None
        if serve is not None:
            self.thread = threading.Thread(target=self._accept, args=(serve,), daemon=True)
            self.thread.start()

    def _accept(self, serve: Callable[[socket.socket], None]) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        try:
            with conn:
                serve(conn)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.errors.append(exc)
        finally:
            self.served.set()

    def close(self) -> None:
        self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def test_healthy_paper_gateway_reports_its_account(paper_sim) -> None:
    result = probe("127.0.0.1", paper_sim.port, mode="paper", expected_account="DU1234567", timeout=5)
    assert (result.healthy, result.reason, result.accounts) == (True, "ok", ("DU1234567",))
    assert result.server_version == 223  # the simulator's default: the newest version ibapi knows
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.as_dict()["accounts"] == ["DU***4567"]


def test_probe_disconnects_and_does_not_hold_a_client_slot(paper_sim) -> None:
    probe("127.0.0.1", paper_sim.port, mode="paper", timeout=5)
    assert paper_sim.wait_for(lambda: paper_sim.clients == [], timeout=10)
    again = probe("127.0.0.1", paper_sim.port, mode="paper", timeout=5)  # same client id again
    assert again.healthy


def test_healthy_live_gateway(live_sim) -> None:
    result = probe("127.0.0.1", live_sim.port, mode="live", expected_account="U7654321", timeout=5)
    assert (result.healthy, result.accounts) == (True, ("U7654321",))


def test_closed_port_is_refused() -> None:
    result = probe("127.0.0.1", free_port(), mode="paper", timeout=5)
    assert (result.healthy, result.reason, result.latency_ms) == (False, "refused", None)


def test_gateway_in_outage_is_refused(paper_sim) -> None:
    paper_sim.outage(3600)
    assert probe("127.0.0.1", paper_sim.port, mode="paper", timeout=5).reason == "refused"


def test_stalled_simulator_times_out(paper_sim) -> None:
    paper_sim.stall(True)
    result = probe("127.0.0.1", paper_sim.port, mode="paper", timeout=0.3)
    assert (result.healthy, result.reason) == (False, "timeout")


def test_listener_that_never_answers_times_out() -> None:
    listener = Listener(None)  # the kernel accepts the TCP connection; nobody ever reads or writes
    try:
        result = probe("127.0.0.1", listener.port, mode="paper", timeout=0.3)
    finally:
        listener.close()
    assert result.reason == "timeout"


def test_paper_account_on_the_live_port_is_wrong_account(paper_sim) -> None:
    result = probe("127.0.0.1", paper_sim.port, mode="live", timeout=5)
    assert (result.healthy, result.reason) == (False, "wrong_account")
    assert "DU***4567" in result.detail and "DU1234567" not in result.detail
    assert result.latency_ms is not None  # the handshake itself completed


def test_live_account_on_the_paper_port_is_wrong_account(live_sim) -> None:
    assert probe("127.0.0.1", live_sim.port, mode="paper", timeout=5).reason == "wrong_account"


def test_other_account_than_configured_is_wrong_account(paper_sim) -> None:
    result = probe("127.0.0.1", paper_sim.port, mode="paper", expected_account="DU7777777", timeout=5)
    assert result.reason == "wrong_account"
    assert "DU***7777" in result.detail


def test_client_id_in_use_is_a_failed_handshake(paper_sim) -> None:
    with hold_client_id(paper_sim, PROBE_CLIENT_ID):
        result = probe("127.0.0.1", paper_sim.port, mode="paper", timeout=5)
    assert result.reason == "handshake_failed"
    assert "326" in result.detail


def test_peer_that_closes_at_once_is_a_failed_handshake() -> None:
    listener = Listener(lambda conn: None)  # accept, then close
    try:
        result = probe("127.0.0.1", listener.port, mode="paper", timeout=5)
    finally:
        listener.close()
    assert result.reason == "handshake_failed"


def test_garbage_reply_is_a_failed_handshake() -> None:
    def serve(conn: socket.socket) -> None:
        read_exact(conn, 4)
        read_frame(conn)
        conn.sendall(comm.make_initial_msg("HTTP/1.1 400 Bad Request\0"))

    listener = Listener(serve)
    try:
        result = probe("127.0.0.1", listener.port, mode="paper", timeout=5)
    finally:
        listener.close()
    assert result.reason == "handshake_failed"
    assert not listener.errors


def test_newer_server_version_with_binary_ids_and_protobuf() -> None:
    """Server version 213: 4-byte message ids, START_API and the answers as protobuf (ibapi's own)."""
    from ibapi.protobuf.ManagedAccounts_pb2 import ManagedAccounts
    from ibapi.protobuf.NextValidId_pb2 import NextValidId
    from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest

    seen: dict[str, object] = {}

    def serve(conn: socket.socket) -> None:
        assert read_exact(conn, 4) == b"API\0"
        seen["versions"] = read_frame(conn).decode()
        conn.sendall(comm.make_initial_msg("213\0" + "20261124 10:00:00 EST\0"))
        start = read_frame(conn)
        seen["msg_id"] = int.from_bytes(start[:4], "big")
        request = StartApiRequest()
        request.ParseFromString(start[4:])
        seen["client_id"] = request.clientId
        conn.sendall(comm.make_msg_proto(209, NextValidId(orderId=7).SerializeToString()))
        conn.sendall(comm.make_msg_proto(215, ManagedAccounts(accountsList="U1111111,").SerializeToString()))
        conn.recv(1)  # wait for the probe to close

    listener = Listener(serve)
    try:
        result = probe("127.0.0.1", listener.port, mode="live", timeout=5)
        assert listener.served.wait(10)
    finally:
        listener.close()
    assert not listener.errors
    assert seen == {"versions": "v100..223", "msg_id": 71 + 200, "client_id": PROBE_CLIENT_ID}
    assert (result.healthy, result.server_version, result.accounts) == (True, 213, ("U1111111",))


def test_account_rules() -> None:
    assert account_problem("live", ("U1234567",)) is None
    assert account_problem("paper", ("DU1234567",)) is None
    assert account_problem("live", ("DU1234567",)) is not None
    assert account_problem("paper", ("U1234567",)) is not None
    assert account_problem("paper", ()) == "the gateway reported no account"
    assert account_problem("paper", ("DU1", "DU2"), expected="DU2") is None
