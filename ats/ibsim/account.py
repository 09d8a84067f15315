"""The cash account: cash, positions, executions and the account values reported from them.

A cash account (no margin, no shorting): a BUY pays its cost and commission from the cash, a SELL
of a held position adds its proceeds; the average cost of a position includes its commissions,
as IB reports it.  Commissions are IB's fixed tier (:func:`commission_for`).  The account answers
the reporting requests: account summary values, positions, executions with their commission
reports.  Whether an order may use the cash or the shares is the order book's part
(:mod:`ats.ibsim.state`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ats.core.commission import ib_commission
from ats.ibsim import outgoing
from ats.ibsim.book import SimOrder
from ats.ibsim.market import Instrument, Market

SUMMARY_TAGS = (
    "AccountType", "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash", "BuyingPower",
    "EquityWithLoanValue", "PreviousDayEquityWithLoanValue", "GrossPositionValue", "ReqTEquity",
    "ReqTMargin", "SMA", "InitMarginReq", "MaintMarginReq", "AvailableFunds", "ExcessLiquidity",
    "Cushion", "FullInitMarginReq", "FullMaintMarginReq", "FullAvailableFunds", "FullExcessLiquidity",
    "LookAheadNextChange", "LookAheadInitMarginReq", "LookAheadMaintMarginReq",
    "LookAheadAvailableFunds", "LookAheadExcessLiquidity", "HighestSeverity", "DayTradesRemaining",
    "Leverage",
)


def commission_for(shares: Decimal, price: float) -> float:
    """IB fixed tier, as the backtest charges it (:func:`ats.core.commission.ib_commission`)."""
    return ib_commission(shares, price)



def _ib_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d %H:%M:%S") + " UTC"



@dataclass
class SimFill:
    """One execution and its commission report."""

    exec_id: str
    order: SimOrder
    time: dt.datetime
    shares: Decimal
    price: float
    cum_qty: Decimal
    avg_price: float
    commission: float
    realized_pnl: float | None

    def view(self) -> outgoing.ExecView:
        o = self.order
        return outgoing.ExecView(
            exec_id=self.exec_id, order_id=o.order_id, client_id=o.client_id, perm_id=o.perm_id,
            time=_ib_time(self.time), account=o.account, side="BOT" if o.action == "BUY" else "SLD",
            shares=self.shares, price=self.price, cum_qty=self.cum_qty, avg_price=self.avg_price,
            order_ref=o.order_ref,
        )


@dataclass
class PositionState:
    quantity: Decimal = Decimal(0)
    avg_cost: float = 0.0  # per share, commissions included (as IB reports it)



class CashAccount:
    """The account's cash, positions and executions (see the module docstring)."""

    def __init__(self, market: Market, account: str, cash: float,
                 last_price: Callable[[Instrument], float]) -> None:
        self.market = market
        self.account = account
        self.cash = round(float(cash), 2)
        self.initial_cash = self.cash
        self._last_price = last_price
        self.fills: list[SimFill] = []
        self.positions: dict[int, PositionState] = {}
        self._next_exec = 1
        self.summary_dirty = False  # a fill changed the account values since they were last pushed

    def _instrument_by_con_id(self, con_id: int) -> Instrument | None:
        for instrument in self.market.instruments.values():
            if instrument.contract.con_id == con_id:
                return instrument
        return None

    def position_value(self) -> float:
        total = 0.0
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                total += float(pos.quantity) * self._last_price(instrument)
        return round(total, 2)

    def summary_values(self) -> dict[str, tuple[str, str]]:
        """tag → (value, currency) for every account summary tag the simulator reports."""
        cash = self.cash
        gross = self.position_value()
        net = round(cash + gross, 2)
        usd = {
            "NetLiquidation": net, "TotalCashValue": cash, "SettledCash": cash, "AccruedCash": 0.0,
            "BuyingPower": cash, "EquityWithLoanValue": net, "PreviousDayEquityWithLoanValue": net,
            "GrossPositionValue": gross, "ReqTEquity": net, "ReqTMargin": gross, "SMA": cash,
            "InitMarginReq": gross, "MaintMarginReq": gross, "AvailableFunds": cash,
            "ExcessLiquidity": cash, "FullInitMarginReq": gross, "FullMaintMarginReq": gross,
            "FullAvailableFunds": cash, "FullExcessLiquidity": cash, "LookAheadInitMarginReq": gross,
            "LookAheadMaintMarginReq": gross, "LookAheadAvailableFunds": cash,
            "LookAheadExcessLiquidity": cash,
        }
        values = {tag: (f"{value:.2f}", "USD") for tag, value in usd.items()}
        values["AccountType"] = ("INDIVIDUAL", "")
        values["Cushion"] = (f"{(cash / net) if net else 1.0:.6f}", "")
        values["LookAheadNextChange"] = ("0", "")
        values["HighestSeverity"] = ("0", "")
        values["DayTradesRemaining"] = ("-1", "")
        values["Leverage"] = (f"{(gross / net) if net else 0.0:.4f}", "")
        return values

    def summary_messages(self, req_id: int, tags: set[str] | None) -> list[outgoing.OutMsg]:
        return [
            outgoing.account_summary(req_id, self.account, tag, value, currency)
            for tag, (value, currency) in self.summary_values().items()
            if tags is None or tag in tags
        ]

    # ------------------------------------------------------------------ fills

    def settle(self, order: SimOrder, shares: Decimal, price: float, commission: float) -> float | None:
        """Book a fill of ``order`` in the position and the cash; the realized PnL of a SELL."""
        con_id = order.instrument.contract.con_id
        pos = self.positions.setdefault(con_id, PositionState())
        realized: float | None = None
        if order.action == "BUY":
            cost_basis = float(pos.quantity) * pos.avg_cost + float(shares) * price + commission
            pos.quantity += shares
            pos.avg_cost = cost_basis / float(pos.quantity) if pos.quantity else 0.0
            self.cash = round(self.cash - float(shares) * price - commission, 2)
        else:
            realized = round((price - pos.avg_cost) * float(shares) - commission, 2)
            pos.quantity -= shares
            if not pos.quantity:
                pos.avg_cost = 0.0
            self.cash = round(self.cash + float(shares) * price - commission, 2)
        return realized

    def record_fill(self, order: SimOrder, shares: Decimal, price: float, time: dt.datetime, commission: float,
                    realized: float | None) -> SimFill:
        """The execution of a settled fill (``order`` already counts it), with its exec id."""
        exec_id = f"0000e0d5.{self._next_exec:08x}.01.01"
        self._next_exec += 1
        fill = SimFill(
            exec_id=exec_id, order=order, time=time, shares=shares, price=price,
            cum_qty=order.filled, avg_price=order.avg_fill_price, commission=commission, realized_pnl=realized,
        )
        self.fills.append(fill)
        self.summary_dirty = True
        return fill

    # ------------------------------------------------------------------ reports

    def executions(self, req_id: int, flt: dict[str, Any]) -> list[outgoing.OutMsg]:
        """IN 11 (reqId echoed) + IN 59 per matching fill, then IN 55."""
        since = _parse_filter_time(flt.get("time", ""))
        out: list[outgoing.OutMsg] = []
        for fill in self.fills:
            o = fill.order
            c = o.instrument.contract
            if flt.get("client_id") and o.client_id != flt["client_id"]:
                continue
            if flt.get("acct_code") and o.account != flt["acct_code"]:
                continue
            if since is not None and fill.time < since:
                continue
            if flt.get("symbol") and flt["symbol"].upper() not in (c.symbol, c.local):
                continue
            if flt.get("sec_type") and flt["sec_type"].upper() != c.sec_type:
                continue
            if flt.get("exchange") and flt["exchange"].upper() not in (c.exchange, c.primary_exchange):
                continue
            side = (flt.get("side") or "").upper()
            if side and side not in (o.action, "BOT" if o.action == "BUY" else "SLD"):
                continue
            out.append(outgoing.execution(req_id, fill.view(), c))
            out.append(outgoing.commission_report(fill.exec_id, fill.commission, c.currency, fill.realized_pnl))
        out.append(outgoing.execution_end(req_id))
        return out

    def position_messages(self) -> list[outgoing.OutMsg]:
        out = []
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                out.append(outgoing.position(self.account, instrument.contract, pos.quantity, round(pos.avg_cost, 6)))
        out.append(outgoing.position_end())
        return out

    def positions_snapshot(self) -> dict[str, dict[str, Any]]:
        """instrument id → quantity and average cost of every open position (JSON-able)."""
        positions = {}
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                positions[instrument.contract.instrument_id] = {
                    "quantity": str(pos.quantity), "avg_cost": round(pos.avg_cost, 6)}
        return positions


def _parse_filter_time(text: str) -> dt.datetime | None:
    """ExecutionFilter.time: ``yyyymmdd-hh:mm:ss`` (UTC) or ``yyyymmdd hh:mm:ss [zone]``."""
    text = (text or "").strip()
    if not text:
        return None
    from zoneinfo import ZoneInfo

    zone: dt.tzinfo = dt.UTC
    if "-" in text[:9]:
        stamp = text.replace("-", " ", 1)
    else:
        parts = text.split(" ")
        stamp = " ".join(parts[:2])
        if len(parts) > 2:
            try:
                zone = ZoneInfo(parts[2]) if parts[2] not in ("UTC", "GMT") else dt.UTC
            except Exception:  # noqa: BLE001 - an unknown zone name: treat as UTC
                zone = dt.UTC
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError:
        try:
            return dt.datetime.strptime(stamp[:8], "%Y%m%d").replace(tzinfo=zone)
        except ValueError:
            return None

