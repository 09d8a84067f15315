"""Helpers for the simulator tests: a recording ``ibapi`` wrapper, a threaded stock client,
decoding server messages with the real ``ibapi`` Decoder, and running the simulator as a process.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ibapi import comm
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.order import Order
from ibapi.wrapper import EWrapper

from support import reap

REPO = Path(__file__).resolve().parents[2]
_NOT_RECORDED = {"logAnswer"}


class RecordingWrapper(EWrapper):
    """An EWrapper that records every callback as ``(name, args)`` and lets tests wait for them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._cond = threading.Condition()

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            self.calls.append((name, args))
            self._cond.notify_all()

    def named(self, name: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return [args for n, args in self.calls if n == name]

    def wait_for(self, name: str, predicate: Callable[[tuple[Any, ...]], bool] = lambda a: True,
                 timeout: float = 10.0) -> tuple[Any, ...]:
        """The first recorded call of ``name`` matching ``predicate`` (waits up to ``timeout``)."""
        found: list[tuple[Any, ...]] = []

        def check() -> bool:
            for n, args in self.calls:
                if n == name and predicate(args):
                    found.append(args)
                    return True
            return False

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                seen = sorted({n for n, _ in self.calls})
                raise AssertionError(f"no {name} callback within {timeout} s; saw {seen}")
        return found[0]

    def errors(self, code: int | None = None) -> list[tuple[Any, ...]]:
        return [a for a in self.named("error") if code is None or a[2] == code]


def _recorder(name: str) -> Callable[..., None]:
    def method(self: RecordingWrapper, *args: Any) -> None:
        self._record(name, args)

    method.__name__ = name
    return method


for _name, _fn in inspect.getmembers(EWrapper, inspect.isfunction):
    if not _name.startswith("_") and _name not in _NOT_RECORDED:
        setattr(RecordingWrapper, _name, _recorder(_name))


class IBApp(EClient):
    """The stock ``ibapi`` client with its reader loop on a thread."""

    def __init__(self) -> None:
        self.rec = RecordingWrapper()
        super().__init__(self.rec)
        self._thread: threading.Thread | None = None
        self._negotiated: int | None = None

    def serverVersion(self) -> int | None:  # noqa: N802 - ibapi's name
        # EClient.run() keeps decoding queued messages after disconnect() cleared the version,
        # which raises TypeError in its thread; decode them at the negotiated version instead.
        return self.serverVersion_ if self.serverVersion_ is not None else self._negotiated

    def start(self, port: int, client_id: int = 1, timeout: float = 10.0) -> IBApp:
        self.connect("127.0.0.1", port, client_id)
        self._negotiated = self.serverVersion_
        self._thread = threading.Thread(target=self.run, name=f"ibapi-{client_id}", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> int:
        """Wait for managedAccounts and nextValidId; returns the next valid order id."""
        self.rec.wait_for("managedAccounts", timeout=timeout)
        return self.rec.wait_for("nextValidId", timeout=timeout)[0]

    def close(self) -> None:
        self.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=10)


class CapturingConnection:
    """A stand-in for ``EClient.conn``: keeps what the client sends instead of sending it."""

    def __init__(self) -> None:
        self.msgs: list[bytes] = []

    def sendMsg(self, msg: bytes) -> None:  # noqa: N802 - ibapi's name
        self.msgs.append(msg)

    def isConnected(self) -> bool:  # noqa: N802
        return True


def written_by_eclient(call: Callable[[EClient], None], server_version: int = 200) -> bytes:
    """Let the stock ``EClient`` at ``server_version`` write one request (``call(client)``);
    return the payload of its last frame."""
    client = EClient(EWrapper())
    client.conn = CapturingConnection()
    client.serverVersion_ = server_version
    client.connState = EClient.CONNECTED
    client.clientId = 1
    call(client)
    assert client.conn.msgs, "the client wrote nothing (refused at this version?)"
    _, payload, _ = comm.read_msg(client.conn.msgs[-1])
    return payload


def decode_with_ibapi(message: Any, server_version: int = 200) -> tuple[RecordingWrapper, int]:
    """Encode ``message`` (an :class:`~ats.ibsim.outgoing.OutMsg`, or framed bytes) at
    ``server_version`` and decode it with the real ``Decoder`` at that version.  A text message
    must have every field consumed; a protobuf one must parse.

    Returns the wrapper (with the callbacks) and the number of text fields after the msg id
    (-1 for protobuf).
    """
    data = message if isinstance(message, bytes) else message.encode(server_version)
    size, payload, rest = comm.read_msg(data)
    assert size == len(payload) and rest == b"", "exactly one complete frame"
    wrapper = RecordingWrapper()
    decoder = Decoder(wrapper, server_version)
    if server_version >= 201:
        msg_id, body = int.from_bytes(payload[:4], "big"), payload[4:]
        if msg_id > 200:
            decoder.processProtoBuf(body, msg_id - 200)
            assert wrapper.calls, "the protobuf handler did not call the wrapper"
            return wrapper, -1
    else:
        msg_id_text, _, body = payload.partition(b"\0")
        msg_id = int(msg_id_text)
    fields = comm.read_fields(body)
    info = decoder.msgId2handleInfo[msg_id]
    if info.wrapperMeth is not None:
        expected = len(info.wrapperParams) - 1  # minus self
        assert len(fields) - 1 == expected, f"wrap handler needs version + {expected} fields, got {len(fields)}"
        decoder.interpret(fields, msg_id)
        assert wrapper.calls, "the wrap handler did not call the wrapper"
    else:
        it = iter(fields)
        info.processMeth(decoder, it)
        left = list(it)
        assert left == [], f"{len(left)} field(s) not consumed: {left}"
    return wrapper, len(fields)


@dataclass
class SimProcess:
    """A simulator running as ``python -m ats.ibsim`` in a subprocess."""

    proc: subprocess.Popen[str]
    port: int
    control_port: int
    drain: threading.Thread

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        reap(self.proc, self.drain, timeout=10)


def start_sim_process(*args: str, timeout: float = 30.0) -> SimProcess:
    """Start ``python -m ats.ibsim --port 0 --control-port 0 …`` and read its ready line."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ats.ibsim", "--port", "0", "--control-port", "0", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(REPO),
    )
    assert proc.stdout is not None
    ready: dict[str, Any] = {}
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "ready":
                ready = event
                break
    finally:
        timer.cancel()
    if not ready:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"the simulator process did not get ready (exit {proc.returncode})")
    # Keep draining stdout so the child never blocks on a full pipe.
    drain = threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True)  # type: ignore[union-attr]
    drain.start()
    return SimProcess(proc, int(ready["port"]), int(ready["control_port"]), drain)


NODE_SCRIPT = Path(__file__).resolve().parent / "ibsim_node_script.py"


class NodeProcess:
    """``ibsim_node_script.py`` in a subprocess; its ``@@`` JSON lines are collected as events."""

    def __init__(self, port: int, phase: str, client_id: int = 1, account: str = "DU1234567") -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), "--port", str(port), "--phase", phase,
             "--client-id", str(client_id), "--account", account],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(REPO),
        )
        self.events: list[dict[str, Any]] = []
        self.log: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                if line.startswith("@@ "):
                    self.events.append(json.loads(line[3:]))
                else:
                    self.log.append(line.rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def named(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e["event"] == name]

    def wait_event(self, name: str, predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
                   timeout: float = 60.0) -> dict[str, Any]:
        """The first event ``name`` matching ``predicate``; fails with the node's log tail otherwise."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            for event in self.events:
                if event["event"] == name and predicate(event):
                    found.append(event)
                    return True
            return self.proc.poll() is not None and not self._reader.is_alive()

        with self._cond:
            self._cond.wait_for(check, timeout)
            if not found:
                tail = "\n".join(self.log[-40:])
                seen = [e["event"] for e in self.events]
                raise AssertionError(f"node event {name!r} not seen within {timeout} s; events {seen}\n{tail}")
        return found[0]

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        reap(self.proc, self._reader, timeout=10)


def nautilus_qqq() -> Contract:
    """The contract the Nautilus adapter sends (IB_SIMPLIFIED symbology)."""
    c = Contract()
    c.secType, c.exchange, c.primaryExchange, c.localSymbol = "STK", "SMART", "NASDAQ", "QQQ"
    return c


def stock(symbol: str, currency: str = "USD") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", currency
    return c


def order(action: str, qty: int, order_type: str = "MKT", limit: float | None = None, tif: str = "GTC",
          ref: str = "") -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif, o.orderRef = action, Decimal(qty), order_type, tif, ref
    if limit is not None:
        o.lmtPrice = limit
    return o
