"""Connectivity and data-farm faults behave like a real gateway's: the socket stays, data stops,
1101 loses the subscriptions, 1102 keeps them, a broken HMDS farm ends bar updates with 10182."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ibsim_support import IBApp, nautilus_qqq

from ats.ibsim import ControlClient, SimGateway

pytestmark = pytest.mark.timeout(60)
App = Callable[..., IBApp]


def _subscribed(sim: SimGateway, ib_app: App) -> IBApp:
    """A client with a keepUpToDate daily bar subscription (41) and streaming ticks (42)."""
    app = ib_app(sim.port)
    app.wait_ready()
    app.reqHistoricalData(41, nautilus_qqq(), "", "5 D", "1 day", "TRADES", 1, 1, True, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 41)
    app.reqMktData(42, nautilus_qqq(), "", False, False, [])
    app.rec.wait_for("tickPrice", lambda a: a[0] == 42)
    return app


def _barrier(app: IBApp) -> None:
    """Everything the simulator sent before now has arrived (it answers in order)."""
    seen = len(app.rec.named("currentTime"))
    app.reqCurrentTime()
    app.rec.wait_for("currentTime", lambda a: len(app.rec.named("currentTime")) > seen)


def _updates(app: IBApp) -> int:
    return len([a for a in app.rec.named("historicalDataUpdate") if a[0] == 41])


def test_1100_stops_the_data_and_1102_resumes_it_on_the_same_socket(sim_gateway: SimGateway, ib_app: App) -> None:
    # Arrange
    app = _subscribed(sim_gateway, ib_app)

    # Act: lost, a day passes; restored with data maintained, another day passes.
    sim_gateway.connectivity_lost()
    app.rec.wait_for("error", lambda a: a[2] == 1100)
    before = _updates(app)
    sim_gateway.advance()
    _barrier(app)
    during = _updates(app) - before
    sim_gateway.connectivity_restored()
    app.rec.wait_for("error", lambda a: a[2] == 1102)
    sim_gateway.advance()
    app.rec.wait_for("historicalDataUpdate", lambda a: a[0] == 41 and _updates(app) > before)

    # Assert
    assert during == 0
    assert app.isConnected() and sim_gateway.clients == [1] and sim_gateway.api_connections == 1
    assert sim_gateway.bar_subscriptions == 1


def test_1101_loses_the_subscriptions_until_the_client_subscribes_again(sim_gateway: SimGateway,
                                                                       ib_app: App) -> None:
    # Arrange
    app = _subscribed(sim_gateway, ib_app)

    # Act
    sim_gateway.connectivity_lost()
    sim_gateway.connectivity_restored(data_lost=True)
    app.rec.wait_for("error", lambda a: a[2] == 1101)
    lost = sim_gateway.bar_subscriptions
    before = _updates(app)
    sim_gateway.advance()
    _barrier(app)
    silent = _updates(app) - before
    app.reqHistoricalData(43, nautilus_qqq(), "", "5 D", "1 day", "TRADES", 1, 1, True, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 43)
    sim_gateway.advance()
    app.rec.wait_for("historicalDataUpdate", lambda a: a[0] == 43)

    # Assert
    assert (lost, silent) == (0, 0)
    assert sim_gateway.bar_subscriptions == 1 and app.isConnected()


def test_a_broken_hmds_farm_ends_bar_updates_with_10182_and_keeps_the_socket(sim_gateway: SimGateway,
                                                                            ib_app: App) -> None:
    # Arrange
    app = _subscribed(sim_gateway, ib_app)

    # Act
    with ControlClient(sim_gateway.control_port) as control:
        control.call("farm", farm="ushmds", up=False)
        app.rec.wait_for("error", lambda a: a[0] == 41 and a[2] == 10182)
        control.call("farm", farm="ushmds", up=True)
        app.rec.wait_for("error", lambda a: a[2] == 2106 and a[0] == -1
                         and len([e for e in app.rec.named("error") if e[2] == 2106]) >= 2)
        with pytest.raises(RuntimeError, match="unknown data farm"):
            control.call("farm", farm="eufarm")

    # Assert: 2105 then 10182 for the subscription; the socket and the tick stream stay.
    codes = [a[2] for a in app.rec.named("error")]
    assert codes.index(2105) < codes.index(10182)
    assert sim_gateway.bar_subscriptions == 0 and app.isConnected() and sim_gateway.api_connections == 1
    sim_gateway.advance()
    app.rec.wait_for("tickPrice", lambda a: a[0] == 42 and a[2] == sim_gateway.last_price("QQQ.NASDAQ"))
