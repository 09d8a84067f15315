"""What a session is and how it ended, in plain data: the plan summary and the final summary.

:func:`session_summary` is what the operator confirms before a session (mode, masked account,
gateway, sleeves with their approvals, risk caps, the stop rule); :func:`summary_for` builds it
from the plain data the Prefect tasks pass around.  :func:`node_summary` and
:func:`order_summary` are what a session leaves behind (positions, PnL; trades, order counts),
carried by :class:`SessionOutcome`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ats.core.errors import StoreError
from ats.core.settings import Mode, Settings, mask_account
from ats.core.sleeves import Sleeve
from ats.trading.node import NodePlan, plan_for
from ats.trading.stop_time import describe_stop

if TYPE_CHECKING:
    from ats.governance.approvals import Approval
    from ats.trading.supervisor import SessionGuard


@dataclass
class SessionOutcome:
    """How a session ended, with its summary (for the CLI, the flow artifact and the demo)."""

    session_id: str
    mode: str
    status: str
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "mode": self.mode, "status": self.status,
                "reason": self.reason, **self.summary}


def session_summary(plan: NodePlan, approvals: list[Approval], until: str | None,
                    for_seconds: float | None = None) -> dict[str, Any]:
    """What the operator confirms: mode, masked account, gateway, sleeves with their approvals, caps, stop."""
    by_key = {f"{a.strategy}@{a.instrument}": a for a in approvals}
    return {
        "mode": plan.mode,
        "account": mask_account(plan.account_id),
        "gateway": f"{plan.host}:{plan.port}",
        "trader_id": plan.trader_id,
        "sleeves": [
            {**s.as_dict(), "approval": (
                {"by": by_key[s.key].approved_by, "at": by_key[s.key].approved_at, "note": by_key[s.key].note}
                if s.key in by_key else None)}
            for s in plan.sleeves
        ],
        "risk_caps": plan.risk_caps(),
        "until": describe_stop(until, for_seconds),
    }


def summary_for(mode: Mode, settings: Settings, sleeves: list[dict[str, Any]], account: str,
                approvals: list[dict[str, Any]], until: str | None,
                for_seconds: float | None = None) -> dict[str, Any]:
    """:func:`session_summary` from plain data (what the Prefect tasks pass around)."""
    from ats.governance.approvals import Approval

    plan = plan_for(settings.mode(mode), [Sleeve(**s) for s in sleeves], account, settings.redis_url,
                    settings.node_id)
    return session_summary(plan, [Approval(**a) for a in approvals], until, for_seconds)


def node_summary(guard: SessionGuard) -> dict[str, Any]:
    """What the node leaves behind as its run returns: positions, PnL, how long it traded."""
    try:
        telemetry = guard.telemetry()
    except Exception:  # noqa: BLE001 - the node may be past telling: the summary goes without it
        telemetry = {}
    since = guard.trading_since
    return {
        # When the node started trading, and for how long it traded (what --for measures).
        "trading_since": since.isoformat() if since else None,
        "traded_seconds": round((dt.datetime.now(dt.UTC) - since).total_seconds(), 3) if since else 0.0,
        "positions": telemetry.get("positions", []),
        "realized_pnl": telemetry.get("realized_pnl"),
        "unrealized_pnl": telemetry.get("unrealized_pnl"),
    }


def order_summary(guard: SessionGuard) -> dict[str, Any]:
    """The session's trades and order counts, as written to the store (read once the session's
    writer has written its last rows)."""
    from ats.governance.sessions import session_detail

    try:
        events = session_detail(guard.session_id, store=guard.store)["order_events"]
    except StoreError:
        events = []
    fills = [e for e in events if e["event"] == "filled"]
    return {
        "trades": [{"ts": e["ts"], "side": e["side"], "quantity": e["details"].get("last_qty", e["quantity"]),
                    "price": e["details"].get("last_px"), "instrument": e["instrument"]} for e in fills],
        "orders": {kind: sum(1 for e in events if e["event"] == kind)
                   for kind in ("intent", "denied", "submitted", "rejected", "filled", "canceled")},
    }


def json_summary(outcome: SessionOutcome) -> str:
    """The outcome as one line of sorted JSON."""
    return json.dumps(outcome.as_dict(), default=str, sort_keys=True)
