"""The link between a trading session and the Prefect flow run that started it.

* :meth:`RunLink.state` — the flow run's state, read by the session every second: anything but
  Running (Cancelling, Suspended/Paused, Failed, Crashed set in the UI or the API) halts it
  (:meth:`ats.trading.supervisor.SessionGuard.follow_run`).
* :meth:`RunLink.publish` — the session's telemetry on the run page while it runs: a markdown
  artifact ``<mode>-session-<id>`` (connection, trading state, last bar, positions, open orders,
  PnL, orders sent/denied, time left; live under the REAL MONEY banner), updated in place, and a
  progress artifact for the time elapsed of the session's length.
* :func:`final_state` — the state the run ends in, matching the session: killed → Cancelled,
  error → Failed, stopped → Completed (returned by the flow, so a run suspended or failed from
  the UI never stays Suspended or Running, and a forced Failed/Crashed ends as the session did).

Prefect is imported inside the methods: :mod:`ats.trading.supervisor` never needs it outside a flow.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import State

REAL_MONEY_BANNER = "# ⚠️ REAL MONEY — live trading session\n"


def artifact_key(mode: str, session_id: str) -> str:
    """The telemetry artifact's key (Prefect keys: lowercase letters, digits, dashes)."""
    return f"{'live' if mode == 'live' else 'paper'}-session-{session_id.lower()}"


def telemetry_rows(telemetry: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) rows of a telemetry snapshot, as the run page and ``ats sessions watch`` show it."""
    orders = telemetry.get("orders") or {}
    positions = telemetry.get("positions") or []
    left = telemetry.get("time_left_s")
    return [
        ("connection", "connected" if telemetry.get("connected") else "DISCONNECTED"),
        ("trading state", str(telemetry.get("trading_state", "?"))),
        ("last bar", ", ".join(f"{k} {v}" for k, v in (telemetry.get("last_bar") or {}).items()) or "—"),
        ("positions", ", ".join(f"{p['instrument']} {p['side']} {p['quantity']:g} @ {p['avg_px_open']:g}"
                                for p in positions) or "flat"),
        ("open orders", str(telemetry.get("open_orders", 0))),
        ("realised PnL", f"{telemetry.get('realized_pnl', 0.0):,.2f}"),
        ("unrealised PnL", f"{telemetry.get('unrealized_pnl', 0.0):,.2f}"),
        ("orders sent / denied", f"{orders.get('sent', 0)} / {orders.get('denied', 0)}"
                                 f" (filled {orders.get('filled', 0)}, canceled {orders.get('canceled', 0)},"
                                 f" rejected {orders.get('rejected', 0)})"),
        ("time left", "—" if left is None else str(dt.timedelta(seconds=round(left)))),
    ]


def telemetry_markdown(session_id: str, mode: str, telemetry: dict[str, Any], at: str | None = None) -> str:
    at = at or dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC")
    lines = [REAL_MONEY_BANNER if mode == "live" else "# Paper trading session\n",
             f"session `{session_id}` — live telemetry, refreshed every few seconds (last {at})", "",
             "| | |", "|---|---|"]
    lines += [f"| **{name}** | {value} |" for name, value in telemetry_rows(telemetry)]
    return "\n".join(lines)


def progress_of(telemetry: dict[str, Any]) -> float | None:
    """Percent of the session's length elapsed (None when it has no known length)."""
    total, left = telemetry.get("session_seconds"), telemetry.get("time_left_s")
    if not total or left is None:
        return None
    return round(max(0.0, min(100.0, 100.0 * (1 - left / total))), 1)


def current_api_url() -> str:
    """The Prefect API the calling flow or task run talks to (its own client's, so an in-process run
    on a ``temporary_settings`` or ephemeral API gets that one; no client or server is started)."""
    from prefect.client.orchestration import get_client

    return str(get_client(sync_client=True).api_url)


class RunLink:
    """One session's flow run: its state, and the artifacts that show the session's telemetry.

    Its methods are called from the session's follower thread, so each opens and closes a client
    of its own on ``api_url`` — never the flow engine's: Prefect hands a run's one sync client to
    every ``get_client()`` in its context, and that client is neither thread-safe (its enter/exit
    count raced with the engine's: a client left open, its sockets to the API garbage-collected
    unclosed) nor usable after the engine closes it.
    """

    def __init__(self, flow_run_id: str, task_run_id: str | None = None, *, api_url: str) -> None:
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        self.api_url = api_url
        self._markdown_id: UUID | None = None
        self._progress_id: UUID | None = None
        self._last: dict[str, Any] | None = None

    def _client(self) -> SyncPrefectClient:
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

        return SyncPrefectClient(self.api_url, auth_string=PREFECT_API_AUTH_STRING.value(),
                                 api_key=PREFECT_API_KEY.value())

    def state(self) -> tuple[str, str] | None:
        """(state type, state name) of the flow run, e.g. ``("PAUSED", "Suspended")``."""
        with self._client() as client:
            run = client.read_flow_run(UUID(self.flow_run_id))
        if run.state is None:
            return None
        return run.state.type.value, run.state.name or run.state.type.value.title()

    def publish(self, session_id: str, mode: str, telemetry: dict[str, Any]) -> None:
        """Create the session's telemetry artifacts, or update them in place."""
        from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

        self._last = telemetry
        markdown = telemetry_markdown(session_id, mode, telemetry)
        progress = progress_of(telemetry)
        description = ("REAL MONEY live session: telemetry" if mode == "live" else "paper session: telemetry")
        with self._client() as client:
            if self._markdown_id is None:
                self._markdown_id = client.create_artifact(ArtifactCreate(
                    key=artifact_key(mode, session_id), type="markdown", data=markdown, description=description,
                    flow_run_id=UUID(self.flow_run_id), task_run_id=self._task_run_uuid())).id
            else:
                client.update_artifact(self._markdown_id, ArtifactUpdate(data=markdown))
            if progress is None:
                return
            if self._progress_id is None:
                self._progress_id = client.create_artifact(ArtifactCreate(
                    key=f"{artifact_key(mode, session_id)}-progress", type="progress", data=progress,
                    description="time elapsed of the session's length (%)",
                    flow_run_id=UUID(self.flow_run_id), task_run_id=self._task_run_uuid())).id
            else:
                client.update_artifact(self._progress_id, ArtifactUpdate(data=progress))

    def _task_run_uuid(self) -> UUID | None:
        return UUID(self.task_run_id) if self.task_run_id else None

    def finish(self, session_id: str, mode: str, status: str, reason: str) -> None:
        """The telemetry artifact's last version says how the session ended (never raises)."""
        from prefect.client.schemas.actions import ArtifactUpdate

        if self._markdown_id is None or self._last is None:
            return
        markdown = (telemetry_markdown(session_id, mode, self._last)
                    + f"\n\n## Session ended: **{status}** — {reason}")
        try:
            with self._client() as client:
                client.update_artifact(self._markdown_id, ArtifactUpdate(data=markdown))
        except Exception:  # noqa: BLE001 - the session has ended; the summary artifact follows
            pass


def final_state(outcome: dict[str, Any], message: str) -> State:
    """The flow run's final state for a session outcome: killed → Cancelled, error → Failed,
    stopped (or anything else) → Completed (with the outcome as its result)."""
    from prefect.states import Cancelled, Completed, Failed

    status = outcome.get("status")
    if status == "killed":
        return Cancelled(message=message)
    if status == "error":
        return Failed(message=message)
    return Completed(message=message, data=outcome)


def end_run(flow_run_id: str, state: State) -> None:
    """Put the run in ``state`` now when it is no longer Running (Suspended, Paused, Cancelling,
    a forced Failed or Crashed): Prefect's engine does not end a run it sees suspended — it
    leaves it Suspended — and a forced terminal state would otherwise hide how the session
    ended.  A Running run is left to the engine, which ends it with the state the flow returns."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(UUID(flow_run_id)).state
        if current is not None and not current.is_running():
            client.set_flow_run_state(UUID(flow_run_id), state, force=True)
