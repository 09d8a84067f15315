"""The simulator's control interface: JSON lines over TCP on 127.0.0.1, and a client for it.

Send one JSON object per line, get one JSON object per line back (``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``); the commands are listed in :mod:`ats.ibsim.server`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ats.ibsim.host import GatewayHost


class ControlMixin:
    """The control-port server of :class:`SimGateway`."""

    async def _handle_control(self: GatewayHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("expected a JSON object")
                    reply = {"ok": True, **(await self._control_command(request))}
                except Exception as exc:  # noqa: BLE001 - report every failure to the caller
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write((json.dumps(reply, default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _control_command(self: GatewayHost, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "ping":
            return {}
        if cmd == "status":
            return {"port": self.port, "listening": self._listening, "mode": self.mode, "account": self.account,
                    "date": self.current_date.isoformat(), "clients": sorted(self._by_client),
                    "api_connections": self.api_connections,
                    "server_version": self.server_version, "negotiated_versions": self.negotiated_versions[-20:], "stalled": self._stalled,
                    "stalled_connections": self.stalled_connections,
                    "state": self.state.snapshot()}
        if cmd == "ledger":
            return {"ledger": self.state.order_ledger.entries()}
        if cmd == "drop":
            await self._adrop()
            return {}
        if cmd in ("outage", "restart"):
            default = 2.0 if cmd == "restart" else 10.0
            await self._aoutage(float(request.get("seconds", default)), "IBC restart" if cmd == "restart" else cmd)
            return {}
        if cmd == "error":
            await self._asend_error(int(request["code"]), int(request.get("req_id", -1)), request.get("text"))
            return {}
        if cmd == "stall":
            self.stall(bool(request.get("on", True)))
            return {}
        if cmd in ("hold_acks", "release_acks"):
            await self._ahold_acks(cmd == "hold_acks" and bool(request.get("on", True)))
            return {"held": self.held_acks}
        if cmd == "connectivity":
            lost = not bool(request.get("ok", False))
            await self._aconnectivity(lost=lost, data_lost=bool(request.get("data_lost", False)) and not lost)
            return {}
        if cmd == "farm":
            await self._afarm(str(request.get("farm", "usfarm")), up=bool(request.get("up", False)))
            return {}
        if cmd == "advance":
            self.clock.advance(int(request.get("days", 1)))
            await self._sync()
            return {"date": self.current_date.isoformat()}
        raise ValueError(f"unknown command {cmd!r}")


class ControlClient:
    """A client for the JSON-lines control interface of a simulator in another process."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")

    def call(self, cmd: str, **params: object) -> dict[str, Any]:
        """Send one command; return the reply, raising :class:`RuntimeError` if it failed."""
        self._file.write((json.dumps({"cmd": cmd, **params}) + "\n").encode())
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the simulator closed the control connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "control command failed"))
        return reply

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
