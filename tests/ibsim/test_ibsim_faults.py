"""Bad input never takes the simulator down; faults behave as documented; control port and CLI."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Callable

import pytest
import typer
from ibsim_support import REPO, IBApp, SimProcess, nautilus_qqq, order
from typer.testing import CliRunner

from ats.cli import sim as sim_cli
from ats.ibsim import ControlClient, SimGateway, SimInputError, wire
from support import run_ats

pytestmark = pytest.mark.timeout(60)
App = Callable[..., IBApp]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def _handshake(sock: socket.socket, versions: bytes = b"v100..200") -> None:
    """Version 200 and below: decimal-text message ids, no protobuf (what these raw tests write)."""
    sock.sendall(b"API\0" + struct.pack("!I", len(versions)) + versions)


def _frame(msg_id: int, *values: object) -> bytes:
    """One text request as an ibapi client below version 201 writes it."""
    payload = "".join(wire.field(v) + "\0" for v in (msg_id, *values)).encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def _read_frame(sock: socket.socket) -> list[bytes] | None:
    """One framed message's fields, or None when the server closed the connection."""
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    (size,) = struct.unpack("!I", header)
    payload = _recv_exact(sock, size)
    assert payload is not None
    return payload.split(b"\0")[:-1]


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_until_closed(sock: socket.socket) -> list[list[bytes]]:
    frames = []
    while (frame := _read_frame(sock)) is not None:
        frames.append(frame)
    return frames


def _started_socket(port: int, client_id: int = 50) -> socket.socket:
    sock = _connect(port)
    _handshake(sock)
    assert _read_frame(sock)[0] == b"200"
    sock.sendall(_frame(71, 2, client_id, ""))
    while (frame := _read_frame(sock)) is not None:
        if frame[:3] == [b"4", b"-1", b"2158"]:
            return sock
    raise AssertionError("no START_API answer")


def _still_serves(sim: SimGateway, ib_app: App, client_id: int) -> None:
    app = ib_app(sim.port, client_id)
    app.wait_ready()


def test_handshake_reply_is_one_frame_and_nothing_before_start_api(sim_gateway: SimGateway) -> None:
    with _connect(sim_gateway.port) as sock:
        _handshake(sock)
        fields = _read_frame(sock)
        assert fields is not None and fields[0] == b"200" and len(fields) == 2
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"API\0\xff\xff\xff\xffxx",
                                     b"API\0" + struct.pack("!I", 5) + b"hello"])
def test_garbage_handshake_closes_the_connection(sim_gateway: SimGateway, ib_app: App, garbage: bytes) -> None:
    with _connect(sim_gateway.port) as sock:
        sock.sendall(garbage)
        assert _read_until_closed(sock) == []
    _still_serves(sim_gateway, ib_app, 1)


def test_an_older_client_gets_its_own_highest_version(sim_gateway: SimGateway) -> None:
    with _connect(sim_gateway.port) as sock:
        _handshake(sock, b"v100..150")
        fields = _read_frame(sock)
        assert fields is not None and fields[0] == b"150" and len(fields) == 2


@pytest.mark.parametrize("client_range", [b"v20..99", b"v224..230"])
def test_a_client_range_outside_the_gateway_gets_its_version_and_is_closed(sim_gateway: SimGateway,
                                                                          client_range: bytes) -> None:
    with _connect(sim_gateway.port) as sock:
        _handshake(sock, client_range)
        frames = _read_until_closed(sock)
    assert frames == [[str(sim_gateway.server_version).encode(), frames[0][1]]]


def test_unknown_message_id_gets_error_505_and_the_connection_stays(sim_gateway: SimGateway) -> None:
    with _started_socket(sim_gateway.port) as sock:
        sock.sendall(_frame(177, 1, 2, 3))
        fields = _read_frame(sock)
        assert fields[:3] == [b"4", b"-1", b"505"]
        sock.sendall(_frame(8, 1, -1))  # still answers: reqIds
        assert _read_frame(sock)[0] == b"9"


@pytest.mark.parametrize("payload", [b"8\x001", b"notanumber\x001\x00", b"\x00"])
def test_malformed_frame_gets_an_error_and_is_closed(sim_gateway: SimGateway, ib_app: App, payload: bytes) -> None:
    with _started_socket(sim_gateway.port) as sock:
        sock.sendall(struct.pack("!I", len(payload)) + payload)
        frames = _read_until_closed(sock)
        assert frames and frames[0][:3] == [b"4", b"-1", b"320"]
    _still_serves(sim_gateway, ib_app, 2)


def test_oversized_length_gets_error_507_and_is_closed(sim_gateway: SimGateway) -> None:
    with _started_socket(sim_gateway.port) as sock:
        sock.sendall(struct.pack("!I", wire.MAX_MSG_LEN + 1))
        frames = _read_until_closed(sock)
        assert frames[0][:3] == [b"4", b"-1", b"507"]


def test_truncated_known_request_gets_error_320_and_the_connection_stays(sim_gateway: SimGateway) -> None:
    with _started_socket(sim_gateway.port) as sock:
        sock.sendall(_frame(9, 8, 5))  # reqContractDetails cut short
        assert _read_frame(sock)[:3] == [b"4", b"-1", b"320"]
        sock.sendall(_frame(49, 1))
        assert _read_frame(sock)[0] == b"49"


def test_drop_connections_closes_clients_and_they_can_reconnect(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port, 1)
    app.wait_ready()
    sim_gateway.drop_connections()
    app.rec.wait_for("connectionClosed")
    assert sim_gateway.clients == []
    _still_serves(sim_gateway, ib_app, 1)


def test_outage_refuses_connections_until_it_is_over(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port, 1)
    app.wait_ready()
    sim_gateway.outage(1.0)
    app.rec.wait_for("connectionClosed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim_gateway.port), timeout=2)
    assert sim_gateway.wait_listening(10)
    _still_serves(sim_gateway, ib_app, 1)


def test_restart_keeps_the_account_state(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port, 1)
    app.wait_ready()
    app.placeOrder(101, nautilus_qqq(), order("BUY", 4))
    app.rec.wait_for("commissionAndFeesReport")
    before = sim_gateway.snapshot()
    sim_gateway.restart(0.2)
    app.rec.wait_for("connectionClosed")
    assert sim_gateway.wait_listening(10)
    again = ib_app(sim_gateway.port, 1)
    assert again.wait_ready() == 102
    again.reqPositions()
    again.rec.wait_for("positionEnd")
    assert [str(a[2]) for a in again.rec.named("position")] == ["4"]
    assert sim_gateway.snapshot() == before


@pytest.mark.parametrize("code", [1100, 1101, 1102])
def test_connectivity_errors_reach_every_client(sim_gateway: SimGateway, ib_app: App, code: int) -> None:
    apps = [ib_app(sim_gateway.port, cid) for cid in (1, 2)]
    for app in apps:
        app.wait_ready()
    sim_gateway.send_error(code)
    for app in apps:
        err = app.rec.wait_for("error", lambda a: a[2] == code)
        assert err[0] == -1 and "Connectivity" in err[3]


def test_stall_accepts_tcp_but_never_answers_the_handshake(sim_gateway: SimGateway, ib_app: App) -> None:
    sim_gateway.stall(True)
    with _connect(sim_gateway.port) as sock:
        _handshake(sock)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
    sim_gateway.stall(False)
    _still_serves(sim_gateway, ib_app, 1)


def test_account_must_match_mode() -> None:
    with pytest.raises(SimInputError, match="DU followed by digits"):
        SimGateway(mode="paper", account="U1234567")
    with pytest.raises(SimInputError, match="U followed by digits"):
        SimGateway(mode="live", account="DU1234567")
    with pytest.raises(SimInputError, match="SYMBOL.VENUE"):
        SimGateway(data={"QQQ": "x.csv"})
    with pytest.raises(SimInputError, match="cannot read"):
        SimGateway(data={"QQQ.NASDAQ": "/nonexistent.csv"})
    with pytest.raises(SimInputError, match="after the last bar"):
        SimGateway(start="2099-01-01")


def test_live_mode_serves_a_u_account(sim_factory: Callable[..., SimGateway], ib_app: App) -> None:
    sim = sim_factory(mode="live", account="U7654321")
    app = ib_app(sim.port)
    app.wait_ready()
    assert app.rec.named("managedAccounts") == [("U7654321",)]


def _cli() -> typer.Typer:
    app = typer.Typer()
    sim_cli.register(app)
    return app


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "paper", "--account", "U123"], "does not fit mode paper"),
    (["--mode", "live", "--account", "DU123"], "does not fit mode live"),
    (["--data", "QQQ.NASDAQ=/nonexistent.csv"], "no such file"),
    (["--data", "QQQ=" + str(REPO / "ats/data/QQQ_unadjusted.csv")], "SYMBOL.VENUE"),
    (["--speed", "fast"], "bad speed"),
    (["--start", "June"], "bad date"),
    (["--server-version", "99"], "outside 100..223"),
    (["--server-version", "224"], "outside 100..223"),
])
def test_cli_refuses_bad_input_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(_cli(), ["--port", "0", *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) <= 2


@pytest.mark.parametrize(("args", "line"), [
    (["--cash", "nan"], "Invalid value for '--cash': expected a finite amount of USD from 0 to 1000000000000"),
    (["--cash", "inf"], "Invalid value for '--cash': expected a finite amount of USD from 0 to 1000000000000"),
    (["--log-level", "NOPE"], "Invalid value for '--log-level': expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    (["--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
    (["--port", "-1"], "Invalid value for '--port': Input should be greater than or equal to 0"),
    (["--control-port", "70000"], "Invalid value for '--control-port': Input should be less than or equal to 65535"),
])
def test_cli_refuses_a_value_it_used_to_accept_silently(args: list[str], line: str) -> None:
    result = run_ats("sim", *args)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {line}"), result.stderr


def test_simulator_refuses_a_port_out_of_range() -> None:
    with pytest.raises(SimInputError, match="control port must be 0..65535"):
        SimGateway(mode="paper", port=0, control_port=70000)


def test_simulator_refuses_cash_that_is_not_a_number() -> None:
    with pytest.raises(SimInputError, match="initial cash must be a finite number"):
        SimGateway(mode="paper", port=0, cash=float("nan"))


def test_cli_refuses_a_bar_file_it_cannot_read_as_text_with_one_line(tmp_path) -> None:
    header = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,100\n"
    latin = tmp_path / "latin.csv"
    latin.write_bytes((header + "2024-01-03,1,2,0.5,1.5,100\xa0\n").encode("latin-1"))
    huge = tmp_path / "huge.csv"
    huge.write_text(header + "2024-01-03," + "1" * 140_000 + ",2,0.5,1.5,100\n")

    not_utf8 = run_ats("sim", "--data", f"QQQ.NASDAQ={latin}")
    oversized = run_ats("sim", "--data", f"QQQ.NASDAQ={huge}")

    assert (not_utf8.returncode, oversized.returncode) == (2, 2)
    assert not_utf8.stderr.splitlines() == [
        f"error: bar file {latin} line 3: not UTF-8 text (invalid start byte at byte 85): save the file as UTF-8"]
    assert oversized.stderr.splitlines() == [f"error: bar file {huge} line 3: a field is longer than 131072 characters"]


def test_cli_help_explains_the_command() -> None:
    result = CliRunner().invoke(_cli(), ["--help"])
    assert result.exit_code == 0
    for word in ("--mode", "--port", "--account", "--data", "--speed", "--start", "--ledger", "--control-port",
                 "--server-version"):
        assert word in result.output


def test_subprocess_simulator_is_controlled_over_the_control_port(
    sim_process: Callable[..., SimProcess], ib_app: App,
) -> None:
    proc = sim_process("--speed", "manual", "--start", "2024-06-03", "--account", "DU7654321",
                       "--server-version", "187")
    app = ib_app(proc.port, 1)
    app.wait_ready()
    with ControlClient(proc.control_port) as control:
        status = control.call("status")
        assert (status["account"], status["date"], status["clients"]) == ("DU7654321", "2024-06-03", [1])
        assert (app.serverVersion(), status["server_version"], status["negotiated_versions"]) == (187, 187, [187])
        assert control.call("advance", days=2)["date"] == "2024-06-05"
        control.call("error", code=1100)
        assert app.rec.wait_for("error", lambda a: a[2] == 1100)
        control.call("drop")
        app.rec.wait_for("connectionClosed")
        assert control.call("ledger")["ledger"] == []
        with pytest.raises(RuntimeError, match="unknown command"):
            control.call("explode")
    proc.stop()
    assert proc.proc.returncode is not None


def test_module_entry_point_prints_help() -> None:
    result = subprocess.run([sys.executable, "-m", "ats.ibsim", "--help"], capture_output=True, text=True,
                            cwd=str(REPO), timeout=60)
    assert result.returncode == 0 and "--control-port" in result.stdout
