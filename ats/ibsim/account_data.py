"""Requests beyond what the Nautilus adapter uses, answered as a gateway does for common clients:
account updates (single and multi), PnL and PnL per position, completed orders, the time in
milliseconds, the head timestamp, matching symbols, option parameters, tick-by-tick data and
historical ticks — all from the simulator's own book and replayed price path.

:class:`AccountAndDataRequests` is mixed into :class:`~ats.ibsim.server.SimGateway`; its
:data:`HANDLERS` join :attr:`RequestHandlers._handlers`.  Subscriptions (account updates, PnL,
tick-by-tick) are pushed again whenever the market moves or an order fills.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibapi.message import OUT

from ats.ibsim import outgoing
from ats.ibsim.handlers import millis
from ats.ibsim.market import Instrument, session_epoch
from ats.ibsim.session import ClientSession

if TYPE_CHECKING:
    from ats.ibsim.host import GatewayHost, Handler

SPREAD = 0.01  # the replayed quote: last ± one cent
QUOTE_SIZE = Decimal(100)


def _unmanaged_account(req_id: int, account: str) -> outgoing.OutMsg:
    """IB's 321 for a request naming an account this gateway does not manage."""
    return outgoing.error(req_id, 321, f"Error validating request.-'bN' : cause - account {account} is not "
                                       "managed by this gateway", millis())


class AccountAndDataRequests:
    """Account, PnL, completed-order and reference-data requests of :class:`SimGateway`."""

    # ------------------------------------------------------------------ account updates

    def _account_update_messages(self: GatewayHost) -> list[outgoing.OutMsg]:
        out = [outgoing.account_value(tag, value, currency, self.account)
               for tag, (value, currency) in self.state.cash_account.summary_values().items()]
        for instrument, quantity, avg_cost, realized in self._positions():
            price = self.last_price(instrument)
            out.append(outgoing.portfolio_value(
                instrument.contract, quantity, price, round(float(quantity) * price, 2), avg_cost,
                round(float(quantity) * (price - avg_cost), 2), realized, self.account))
        hh_mm = time.strftime("%H:%M", time.gmtime(self.market_epoch()))
        out.append(outgoing.account_update_time(hh_mm))
        return out

    def _positions(self: GatewayHost) -> list[tuple[Instrument, Decimal, float, float]]:
        """(instrument, quantity, average cost, realised PnL) of every open position."""
        rows = []
        for instrument in self.market.instruments.values():
            position = self.state.cash_account.positions.get(instrument.contract.con_id)
            if position is None or not position.quantity:
                continue
            realized = sum(f.realized_pnl or 0.0 for f in self.state.cash_account.fills if f.order.instrument is instrument)
            rows.append((instrument, position.quantity, round(position.avg_cost, 6), round(realized, 2)))
        return rows

    def _on_account_updates(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.account_updates = req["subscribe"]
        if not req["subscribe"]:
            return
        for message in self._account_update_messages():
            session.send(message)
        session.send(outgoing.account_download_end(self.account))

    def _on_account_updates_multi(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        if req["account"] not in ("", "All", self.account):
            session.send(_unmanaged_account(req_id, req["account"]))
            return
        session.account_multi_subs[req_id] = req["model_code"]
        for message in self._account_multi_messages(req_id, req["model_code"]):
            session.send(message)
        session.send(outgoing.account_update_multi_end(req_id))

    def _account_multi_messages(self: GatewayHost, req_id: int, model_code: str) -> list[outgoing.OutMsg]:
        return [outgoing.account_update_multi(req_id, self.account, model_code, tag, value, currency)
                for tag, (value, currency) in self.state.cash_account.summary_values().items()]

    def _on_cancel_account_updates_multi(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.account_multi_subs.pop(req["req_id"], None)

    # ------------------------------------------------------------------ PnL

    def _pnl_of(self: GatewayHost, instrument: Instrument) -> tuple[Decimal, float, float, float, float]:
        """(quantity, daily, unrealised, realised, value) of one instrument's position: daily is the
        move since the previous close plus what fills realised on the current market day."""
        position = self.state.cash_account.positions.get(instrument.contract.con_id)
        quantity = position.quantity if position is not None else Decimal(0)
        avg_cost = position.avg_cost if position is not None else 0.0
        price = self.last_price(instrument)
        today = self.current_date
        previous = instrument.last_bar_until(today - dt.timedelta(days=1))
        prev_close = previous.close if previous is not None else price
        fills = [f for f in self.state.cash_account.fills if f.order.instrument is instrument]
        realized = sum(f.realized_pnl or 0.0 for f in fills)
        realized_today = sum(f.realized_pnl or 0.0 for f in fills if f.time.date() == today)
        daily = float(quantity) * (price - prev_close) + realized_today
        unrealized = float(quantity) * (price - avg_cost) if quantity else 0.0
        return quantity, round(daily, 2), round(unrealized, 2), round(realized, 2), round(float(quantity) * price, 2)

    def _pnl_message(self: GatewayHost, req_id: int, con_id: int | None) -> outgoing.OutMsg | None:
        if con_id is None:
            rows = [self._pnl_of(i) for i in self.market.instruments.values()]
            return outgoing.pnl(req_id, round(sum(r[1] for r in rows), 2), round(sum(r[2] for r in rows), 2),
                                round(sum(r[3] for r in rows), 2))
        instrument = next((i for i in self.market.instruments.values() if i.contract.con_id == con_id), None)
        if instrument is None:
            return None
        return outgoing.pnl_single(req_id, *self._pnl_of(instrument))

    def _on_pnl(self: GatewayHost, session: ClientSession, req: dict[str, Any], con_id: int | None = None) -> None:
        req_id = req["req_id"]
        if req["account"] not in ("", self.account):
            session.send(_unmanaged_account(req_id, req["account"]))
            return
        message = self._pnl_message(req_id, con_id)
        if message is None:
            session.send(outgoing.error(req_id, 200, "No security definition has been found for the request",
                                        millis()))
            return
        session.pnl_subs[req_id] = con_id
        session.send(message)

    def _on_pnl_single(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        self._on_pnl(session, req, con_id=req["con_id"])

    def _on_cancel_pnl(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.pnl_subs.pop(req["req_id"], None)

    # ------------------------------------------------------------------ orders and time

    def _on_completed_orders(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        for order in self.state.orders.values():
            if order.is_open or order.status not in ("Filled", "Cancelled", "Inactive"):
                continue
            fills = [f for f in self.state.cash_account.fills if f.order is order]
            filled = sum((f.shares for f in fills), Decimal(0))
            when = fills[-1].time.strftime("%Y%m%d %H:%M:%S") + " UTC" if fills else ""
            session.send(outgoing.completed_order(order.view(), order.instrument.contract, filled, when,
                                                  order.status))
        session.send(outgoing.completed_orders_end())

    def _on_current_time_in_millis(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.send(outgoing.current_time_in_millis(
            int(time.time() * 1000) if self.wall_clock_time else self.market_epoch() * 1000))

    # ------------------------------------------------------------------ reference data

    def _on_head_timestamp(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        first = instrument.bars[0].date
        session.send(outgoing.head_timestamp(req_id, first.strftime("%Y%m%d") + "-13:30:00"))

    def _on_matching_symbols(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        pattern = req["pattern"].strip().upper()
        found = [i.contract for i in self.market.instruments.values()
                 if pattern and (i.contract.symbol.upper().startswith(pattern)
                                 or pattern in (i.contract.long_name or "").upper())]
        session.send(outgoing.symbol_samples(req["req_id"], found[:16]))

    def _on_sec_def_opt_params(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        # The simulator lists no option chains: IB answers an underlying without options with the end only.
        session.send(outgoing.sec_def_opt_params_end(req["req_id"]))

    # ------------------------------------------------------------------ ticks

    def _tick_now(self: GatewayHost, instrument: Instrument) -> outgoing.TickView:
        price = self.last_price(instrument)
        return outgoing.TickView(time=self.market_epoch(), price=price, size=QUOTE_SIZE,
                                 bid=round(price - SPREAD, 2), ask=round(price + SPREAD, 2),
                                 bid_size=QUOTE_SIZE, ask_size=QUOTE_SIZE)

    def _on_tick_by_tick(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        tick_type = outgoing.TICK_BY_TICK_TYPES.get(req["tick_type"])
        if tick_type is None:
            session.send(outgoing.error(req_id, 10189, f"Failed to request tick-by-tick data:invalid tick type "
                                                       f"{req['tick_type']!r}", millis()))
            return
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        session.tbt_subs[req_id] = (instrument, tick_type)
        session.send(outgoing.tick_by_tick(req_id, tick_type, self._tick_now(instrument)))

    def _on_cancel_tick_by_tick(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.tbt_subs.pop(req["req_id"], None)

    def _on_historical_ticks(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        from ats.ibsim.handlers import parse_end

        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        what = req["what_to_show"].upper()
        encoders: dict[str, Callable[..., outgoing.OutMsg]] = {
            "TRADES": outgoing.historical_ticks_last, "BID_ASK": outgoing.historical_ticks_bid_ask,
            "MIDPOINT": outgoing.historical_ticks_midpoint}
        if what not in encoders:
            session.send(outgoing.error(req_id, 162, f"Historical Market Data Service error message:"
                                                     f"no {what} ticks", millis()))
            return
        try:
            day = parse_end(req["end"] or req["start"]) or self.current_date
        except ValueError as exc:
            session.send(outgoing.error(req_id, 321, f"Error validating request:{exc}", millis()))
            return
        bar = instrument.bar_on(day) or instrument.last_bar_until(day)
        count = max(1, min(req["number_of_ticks"] or 1000, 1000))
        ticks = []
        if bar is not None:
            last_fraction = self._pos.fraction if bar.date == self.current_date else 1.0
            for k in range(count):
                fraction = last_fraction * (k + 1) / count
                price = round(bar.price_at(fraction), 2)
                ticks.append(outgoing.TickView(
                    time=session_epoch(bar.date, fraction), price=price, size=QUOTE_SIZE,
                    bid=round(price - SPREAD, 2), ask=round(price + SPREAD, 2), bid_size=QUOTE_SIZE,
                    ask_size=QUOTE_SIZE))
        session.send(encoders[what](req_id, ticks, True))

    # ------------------------------------------------------------------ pushes

    def _push_subscriptions(self: GatewayHost) -> None:
        """After the market moved or an order filled: account updates, PnL, tick-by-tick."""
        for session in list(self._sessions):
            if session.account_updates:
                for message in self._account_update_messages():
                    session.send(message)
            for req_id, model_code in session.account_multi_subs.items():
                for message in self._account_multi_messages(req_id, model_code):
                    session.send(message)
            for req_id, con_id in session.pnl_subs.items():
                pnl = self._pnl_message(req_id, con_id)
                if pnl is not None:
                    session.send(pnl)
            for req_id, (instrument, tick_type) in (session.tbt_subs.items() if self._market_data_flows() else ()):
                session.send(outgoing.tick_by_tick(req_id, tick_type, self._tick_now(instrument)))

    HANDLERS: dict[int, Handler] = {
        OUT.REQ_ACCT_DATA: _on_account_updates,
        OUT.REQ_ACCOUNT_UPDATES_MULTI: _on_account_updates_multi,
        OUT.CANCEL_ACCOUNT_UPDATES_MULTI: _on_cancel_account_updates_multi,
        OUT.REQ_PNL: _on_pnl,
        OUT.CANCEL_PNL: _on_cancel_pnl,
        OUT.REQ_PNL_SINGLE: _on_pnl_single,
        OUT.CANCEL_PNL_SINGLE: _on_cancel_pnl,
        OUT.REQ_COMPLETED_ORDERS: _on_completed_orders,
        OUT.REQ_CURRENT_TIME_IN_MILLIS: _on_current_time_in_millis,
        OUT.REQ_HEAD_TIMESTAMP: _on_head_timestamp,
        OUT.CANCEL_HEAD_TIMESTAMP: lambda self, session, req: None,
        OUT.REQ_MATCHING_SYMBOLS: _on_matching_symbols,
        OUT.REQ_SEC_DEF_OPT_PARAMS: _on_sec_def_opt_params,
        OUT.REQ_TICK_BY_TICK_DATA: _on_tick_by_tick,
        OUT.CANCEL_TICK_BY_TICK_DATA: _on_cancel_tick_by_tick,
        OUT.REQ_HISTORICAL_TICKS: _on_historical_ticks,
    }
