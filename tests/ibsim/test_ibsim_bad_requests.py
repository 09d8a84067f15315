"""Every request kind, malformed, at a text and at a binary/protobuf version: the simulator answers
as IB does (an error on the request's id or -1) or ignores what IB ignores, logs it, never
crashes and never closes the socket without a word."""

from __future__ import annotations

import logging
import random
import socket
import struct

import pytest

from ats.ibsim import SimGateway, versions, wire

pytestmark = pytest.mark.timeout(120)

GARBAGE_FIELDS = [[], ["x"], ["1"], ["-1", "", "abc"], ["9" * 30, "1e999", "nan"], ["1", "2", "3", "4", "5", "6"]]


def _frame(version: int, msg_id: int, body: bytes) -> bytes:
    payload = (struct.pack("!I", msg_id) if versions.binary_ids(version) else f"{msg_id}\0".encode()) + body
    return struct.pack("!I", len(payload)) + payload


def _text(values: list[str]) -> bytes:
    return "".join(wire.field(v) + "\0" for v in values).encode("ascii")


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _next_message(sock: socket.socket, version: int) -> tuple[int, bytes] | None:
    header = _recv_exact(sock, 4)
    if header is None:
        return None
    payload = _recv_exact(sock, struct.unpack("!I", header)[0])
    assert payload is not None
    if versions.binary_ids(version):
        return struct.unpack("!I", payload[:4])[0], payload[4:]
    msg_id, _, rest = payload.partition(b"\0")
    return int(msg_id), rest


def _connected(port: int, version: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    spec = f"v100..{version}".encode()
    sock.sendall(b"API\0" + struct.pack("!I", len(spec)) + spec)
    header = _recv_exact(sock, 4)
    assert header is not None
    assert _recv_exact(sock, struct.unpack("!I", header)[0]).split(b"\0")[0] == str(version).encode()
    sock.sendall(_frame(version, 71, _text(["2", "60", ""])))  # START_API, client 60, as text
    while (message := _next_message(sock, version)) is not None:
        if message[0] == 9 or message[0] == 9 + versions.PROTOBUF_MSG_ID:  # nextValidId
            return sock
    raise AssertionError("no nextValidId after START_API")


def _answers_until_current_time(sock: socket.socket, version: int) -> list[int] | None:
    """Message ids up to the answer of a reqCurrentTime sent now; None if the socket closed."""
    sock.sendall(_frame(version, 49, _text(["1"])))
    ids = []
    while (message := _next_message(sock, version)) is not None:
        if message[0] in (49, 49 + versions.PROTOBUF_MSG_ID):
            return ids
        ids.append(message[0])
    return None


@pytest.mark.parametrize("version", [176, 200, versions.DEFAULT_VERSION])
def test_malformed_requests_of_every_kind_are_answered_and_never_crash_the_gateway(
        sim_gateway: SimGateway, version: int, caplog: pytest.LogCaptureFixture) -> None:
    # Arrange
    caplog.set_level(logging.WARNING, logger="ats.ibsim")
    rng = random.Random(version)
    sock = _connected(sim_gateway.port, version)
    kinds = sorted(sim_gateway._handlers)  # every request kind the simulator serves
    closed = []

    # Act: each kind with garbage text fields, and (from 201) with a garbage protobuf body.
    for msg_id in kinds:
        bodies = [_text(fields) for fields in GARBAGE_FIELDS]
        if versions.binary_ids(version):
            bodies += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(3)]
        for number, body in enumerate(bodies):
            proto = number >= len(GARBAGE_FIELDS)
            sock.sendall(_frame(version, msg_id + (versions.PROTOBUF_MSG_ID if proto else 0), body))
            answered = _answers_until_current_time(sock, version)
            if answered is None:  # the gateway closed this socket: it must have said why first
                closed.append((msg_id, number))
                sock = _connected(sim_gateway.port, version)

    # Assert: still serving; every close was a framing error reported with 320 first.
    assert _answers_until_current_time(sock, version) is not None
    assert closed == []
    assert sim_gateway.clients == [60]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "failed" in r.getMessage()
                and "Traceback" in (r.exc_text or "")], "a request crashed a handler"
    sock.close()
