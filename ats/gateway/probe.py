"""The gateway probe: one TWS API handshake against an IB Gateway, then disconnect.

What a healthy gateway does (the same exchange the Nautilus adapter makes, see ib_sim_spec §1):

1. TCP connect;
2. client sends ``API\\0`` + framed ``v100..223``; the gateway answers one framed message of
   two fields: its server version and connection time;
3. client sends START_API (msg 71) with its client id; the gateway pushes ``managedAccounts``
   (msg 15) and ``nextValidId`` (msg 9) unprompted, in either order.

The probe succeeds when both arrive within ``timeout`` seconds (one deadline for the whole
exchange) and the accounts fit the mode: paper gateways report ``DU…`` accounts, live gateways
``U…`` accounts, and when an account id is configured for the mode it must be among them.
The result says why it failed: ``refused`` (nothing listens), ``timeout`` (something listens but
does not answer in time: a hung gateway, a login dialog waiting for 2FA), ``handshake_failed``
(the peer closed or answered nonsense, or refused the client id), ``wrong_account``.

Pure sockets plus ``ibapi.comm`` framing; no ibapi client thread.  Server versions ≥ 201 frame
message ids as 4-byte integers and may send protobuf bodies (msg id + 200): both are handled,
so the probe also works against current real gateways, not only the simulator (version 200).

The probe connects with its own client id (default :data:`PROBE_CLIENT_ID`), so it never
collides with a trading node's connection.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ibapi import comm

from ats.core.accounts import account_mode
from ats.core.settings import mask_account

if TYPE_CHECKING:
    from ats.core.settings import Mode, Settings

Reason = Literal["ok", "refused", "timeout", "handshake_failed", "wrong_account"]
REASONS: tuple[str, ...] = ("ok", "refused", "timeout", "handshake_failed", "wrong_account")

PROBE_CLIENT_ID = 977
"""Client id of the probe's API connection (trading nodes use small ids; this one stays clear)."""

DEFAULT_TIMEOUT = 10.0
CLIENT_VERSIONS = "v100..223"  # what the Nautilus adapter advertises (ibapi MIN/MAX_CLIENT_VER)

_START_API, _NEXT_VALID_ID, _MANAGED_ACCTS, _ERR_MSG = 71, 9, 15, 4
_REQ_CURRENT_TIME, _CURRENT_TIME = 49, 49  # outgoing and incoming ids are both 49
_PROTOBUF_OFFSET = 200
_SV_RAW_INT_MSG_ID = 201  # MIN_SERVER_VER_PROTOBUF: binary msg ids from here on
_SV_PROTOBUF_START_API = 213  # MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3
_SV_ERROR_TIME = 194
_SV_OPTIONAL_CAPABILITIES = 72
# Errors with reqId -1 that mean this API connection will not work.
_FATAL_CODES = {
    326: "client id already in use",
    502: "could not connect",
    503: "the gateway needs an update",
    504: "not connected",
    1300: "socket port reset",
}


@dataclass(frozen=True)
class ProbeResult:
    """What one probe found.  ``accounts`` are the raw ids: mask them before display (:meth:`as_dict`)."""

    mode: str
    host: str
    port: int
    healthy: bool
    reason: Reason
    latency_ms: float | None
    accounts: tuple[str, ...] = ()
    server_version: int | None = None
    detail: str = ""
    notices: tuple[int, ...] = field(default=())  # informational error codes seen (2104, 2106, …)
    gateway_time: float | None = None  # the gateway's current time (reqCurrentTime), with ask_time

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view with the accounts masked."""
        data = asdict(self)
        data["accounts"] = [mask_account(a) for a in self.accounts]
        data["notices"] = list(self.notices)
        if self.latency_ms is not None:
            data["latency_ms"] = round(self.latency_ms, 1)
        return data


class _ProbeFailed(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def account_problem(mode: str | None, accounts: tuple[str, ...] | list[str],
                    expected: str | None = None) -> str | None:
    """Why ``accounts`` do not fit ``mode`` (and the configured ``expected`` id), or ``None``."""
    if not accounts:
        return "the gateway reported no account"
    if mode == "live":
        paper = [a for a in accounts if account_mode(a) == "paper"]
        if paper:
            return f"paper account {mask_account(paper[0])} on the live gateway"
        odd = [a for a in accounts if account_mode(a) != "live"]
        if odd:
            return f"account {mask_account(odd[0])} is not a live U… account"
    elif mode == "paper":
        live = [a for a in accounts if account_mode(a) != "paper"]
        if live:
            return f"live account {mask_account(live[0])} on the paper gateway"
    if expected and expected not in accounts:
        return f"configured account {mask_account(expected)} not among the gateway's accounts"
    return None


def probe(host: str, port: int, *, mode: str | None = None, expected_account: str | None = None,
          timeout: float = DEFAULT_TIMEOUT, client_id: int = PROBE_CLIENT_ID,
          ask_time: bool = False) -> ProbeResult:
    """Probe the gateway at ``host:port`` (see the module docstring).  Never raises for a bad gateway.

    ``ask_time``: also ask the gateway's current time (``reqCurrentTime``, msg 49) once the
    handshake is done — what :mod:`ats.gateway.identity` compares with this machine's clock.
    """
    started = time.monotonic()
    deadline = started + timeout
    accounts: tuple[str, ...] = ()
    server_version: int | None = None
    notices: list[int] = []
    gateway_time: float | None = None

    def result(healthy: bool, reason: Reason, detail: str = "", latency: float | None = None) -> ProbeResult:
        return ProbeResult(mode or "", host, port, healthy, reason, latency, accounts, server_version,
                           detail, tuple(notices), gateway_time)

    try:
        sock = _connect(host, port, deadline)
    except _ProbeFailed as exc:
        return result(False, exc.reason, exc.detail)
    try:
        reader = _Reader(sock, deadline)
        sock.sendall(b"API\0" + comm.make_initial_msg(CLIENT_VERSIONS))
        server_version = _read_server_version(reader)
        sock.sendall(_start_api(server_version, client_id))
        next_id_seen = False
        while not (accounts and next_id_seen):
            msg_id, body = _split_msg_id(reader.message(), server_version)
            if msg_id == _MANAGED_ACCTS:
                accounts = tuple(a for a in _accounts_field(body).split(",") if a)
            elif msg_id == _MANAGED_ACCTS + _PROTOBUF_OFFSET:
                accounts = tuple(a for a in _proto_accounts(body).split(",") if a)
            elif msg_id in (_NEXT_VALID_ID, _NEXT_VALID_ID + _PROTOBUF_OFFSET):
                next_id_seen = True
            elif msg_id in (_ERR_MSG, _ERR_MSG + _PROTOBUF_OFFSET):
                req_id, code, text = _error(body, server_version, protobuf=msg_id > _PROTOBUF_OFFSET)
                if req_id == -1 and code in _FATAL_CODES:
                    raise _ProbeFailed("handshake_failed", f"gateway error {code}: {text or _FATAL_CODES[code]}")
                notices.append(code)
        latency = (time.monotonic() - started) * 1000.0
        if ask_time:
            gateway_time = _current_time(reader, sock, server_version)
    except _ProbeFailed as exc:
        return result(False, exc.reason, exc.detail)
    finally:
        _close(sock)
    problem = account_problem(mode, accounts, expected_account)
    if problem:
        return result(False, "wrong_account", problem, latency)
    return result(True, "ok", f"server version {server_version}", latency)


def probe_mode(mode: Mode, settings: Settings | None = None, *, timeout: float = DEFAULT_TIMEOUT,
               client_id: int = PROBE_CLIENT_ID) -> ProbeResult:
    """Probe the gateway of ``mode`` (``paper``/``live``) at the host, port and account from settings."""
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    ms = settings.mode(mode)
    return probe(ms.host, ms.port, mode=mode, expected_account=ms.account_id, timeout=timeout,
                 client_id=client_id)


# ------------------------------------------------------------------------------------ internals

def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _ProbeFailed("timeout", "no complete answer within the probe timeout")
    return left


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=_remaining(deadline))
    except ConnectionRefusedError:
        raise _ProbeFailed("refused", f"connection refused by {host}:{port}") from None
    except TimeoutError:
        raise _ProbeFailed("timeout", f"TCP connect to {host}:{port} timed out") from None
    except OSError as exc:
        # Unreachable host, unknown name: nothing answers on that address.
        raise _ProbeFailed("refused", f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Reader:
    """Length-framed messages off a socket, bounded by one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = b""

    def message(self) -> bytes:
        while True:
            size, msg, rest = comm.read_msg(self.buf)
            if size > 0xFFFFFF:
                raise _ProbeFailed("handshake_failed", f"bad message length {size}")
            if msg:
                self.buf = rest
                return msg
            if size == 0 and len(self.buf) >= 4:  # an empty framed message: skip it
                self.buf = self.buf[4:]
                continue
            self.sock.settimeout(_remaining(self.deadline))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise _ProbeFailed("timeout", "the gateway did not answer within the probe timeout") from None
            except OSError as exc:
                raise _ProbeFailed("handshake_failed", f"connection error: {exc.strerror or exc}") from None
            if not chunk:
                raise _ProbeFailed("handshake_failed", "the gateway closed the connection during the handshake")
            self.buf += chunk


def _read_server_version(reader: _Reader) -> int:
    fields = comm.read_fields(reader.message())
    if len(fields) != 2:
        raise _ProbeFailed("handshake_failed", f"unexpected handshake reply ({len(fields)} fields)")
    try:
        version = int(fields[0])
    except ValueError:
        raise _ProbeFailed("handshake_failed", "unexpected handshake reply (no server version)") from None
    if version < 100:
        raise _ProbeFailed("handshake_failed", f"server version {version} is older than the API minimum 100")
    return version


def _start_api(server_version: int, client_id: int) -> bytes:
    if server_version >= _SV_PROTOBUF_START_API:
        from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest

        body = StartApiRequest(clientId=client_id).SerializeToString()
        return comm.make_msg_proto(_START_API + _PROTOBUF_OFFSET, body)
    text = comm.make_field(2) + comm.make_field(client_id)
    if server_version >= _SV_OPTIONAL_CAPABILITIES:
        text += comm.make_field("")
    return comm.make_msg(_START_API, server_version >= _SV_RAW_INT_MSG_ID, text)


def _current_time(reader: _Reader, sock: socket.socket, server_version: int) -> float:
    """``reqCurrentTime`` → the gateway's clock (Unix seconds); other messages are skipped."""
    if server_version >= _SV_PROTOBUF_START_API:  # the same unified version (ibapi PROTOBUF_MSG_IDS)
        from ibapi.protobuf.CurrentTimeRequest_pb2 import CurrentTimeRequest

        sock.sendall(comm.make_msg_proto(_REQ_CURRENT_TIME + _PROTOBUF_OFFSET, CurrentTimeRequest().SerializeToString()))
    else:
        sock.sendall(comm.make_msg(_REQ_CURRENT_TIME, server_version >= _SV_RAW_INT_MSG_ID, comm.make_field(1)))
    while True:
        msg_id, body = _split_msg_id(reader.message(), server_version)
        if msg_id == _CURRENT_TIME:
            fields = comm.read_fields(body)  # [version, time]
            try:
                return float(int(fields[1]))
            except (IndexError, ValueError):
                raise _ProbeFailed("handshake_failed", "malformed currentTime message") from None
        if msg_id == _CURRENT_TIME + _PROTOBUF_OFFSET:
            from ibapi.protobuf.CurrentTime_pb2 import CurrentTime

            proto = CurrentTime()
            try:
                proto.ParseFromString(body)
            except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
                raise _ProbeFailed("handshake_failed", "malformed currentTime message") from None
            return float(proto.currentTime)


def _split_msg_id(msg: bytes, server_version: int) -> tuple[int, bytes]:
    try:
        if server_version >= _SV_RAW_INT_MSG_ID:
            return int.from_bytes(msg[:4], "big"), msg[4:]
        end = msg.index(b"\0")
        return int(msg[:end]), msg[end + 1:]
    except ValueError:
        raise _ProbeFailed("handshake_failed", "malformed message from the gateway") from None


def _accounts_field(body: bytes) -> str:
    fields = comm.read_fields(body)  # [version, accountsList]
    if len(fields) < 2:
        raise _ProbeFailed("handshake_failed", "malformed managedAccounts message")
    return fields[1].decode("ascii", "replace")


def _proto_accounts(body: bytes) -> str:
    from ibapi.protobuf.ManagedAccounts_pb2 import ManagedAccounts

    proto = ManagedAccounts()
    try:
        proto.ParseFromString(body)
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise _ProbeFailed("handshake_failed", "malformed managedAccounts message") from None
    return proto.accountsList if proto.HasField("accountsList") else ""


def _error(body: bytes, server_version: int, protobuf: bool) -> tuple[int, int, str]:
    if protobuf:
        from ibapi.protobuf.ErrorMessage_pb2 import ErrorMessage

        proto = ErrorMessage()
        try:
            proto.ParseFromString(body)
        except Exception:  # noqa: BLE001
            return 0, 0, ""
        return proto.id, proto.errorCode, proto.errorMsg
    fields = list(comm.read_fields(body))
    if server_version < _SV_ERROR_TIME and fields:
        fields = fields[1:]  # leading version field
    try:
        return int(fields[0]), int(fields[1]), fields[2].decode("ascii", "replace") if len(fields) > 2 else ""
    except (IndexError, ValueError):
        return 0, 0, ""

