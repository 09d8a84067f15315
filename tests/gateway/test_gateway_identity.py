"""What a session trades against, read off the wire (issue 17, finding 2).

A simulator answers ``reqCurrentTime`` with its simulated market clock (a replayed day years
back); a real gateway with the exchange's "now".  ``wall_clock_time=True`` makes the simulator
answer like a real gateway, standing in for one (a real IB Gateway cannot run here).
"""

from __future__ import annotations

from ats.gateway.identity import GatewayIdentity, identify_gateway


def test_the_simulator_is_identified_by_its_replayed_clock(sim_factory) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-01-02", server_version=200)

    # Act
    identity = identify_gateway("127.0.0.1", sim.port)

    # Assert
    assert identity.kind == "simulator" and not identity.real_time
    assert identity.server_version == 200  # what the handshake negotiated with this (older) gateway
    assert identity.clock_offset_s < -365 * 86400  # the simulated market is on 2024-01-02


def test_a_gateway_on_the_real_clock_is_identified_as_a_gateway(sim_factory) -> None:
    # Arrange: the simulator answering reqCurrentTime with this machine's clock, as IB does
    sim = sim_factory(mode="paper", clock="manual", wall_clock_time=True)

    # Act
    identity = identify_gateway("127.0.0.1", sim.port)

    # Assert
    assert identity.kind == "gateway" and identity.real_time
    assert abs(identity.clock_offset_s) < 5


def test_a_simulator_ats_started_itself_is_a_simulator_whatever_its_clock_says(sim_factory) -> None:
    sim = sim_factory(mode="paper", wall_clock_time=True)

    assert identify_gateway("127.0.0.1", sim.port, started_by_ats=True).kind == "simulator"


def test_nothing_answering_is_unknown(sim_factory) -> None:
    from support import free_port

    identity = identify_gateway("127.0.0.1", free_port(), timeout=1.0)

    assert identity.kind == "unknown" and not identity.real_time


def test_a_gateway_clock_running_fast_over_the_session_is_not_real_time() -> None:
    # Arrange: two readings of a "gateway" clock that moved a day in 20 s of ours
    start = GatewayIdentity("gateway", 200, 0.5, gateway_time=1_000_000.0, local_time=1_000_000.0)
    later = GatewayIdentity("gateway", 200, 0.5, gateway_time=1_086_400.0, local_time=1_000_020.0)

    # Act
    measured = start.with_speed(later)

    # Assert
    assert measured.clock_speed == 4320.0
    assert measured.kind == "simulator" and not measured.real_time


def test_a_real_time_clock_stays_a_gateway_and_a_short_window_measures_nothing() -> None:
    start = GatewayIdentity("gateway", 200, 0.2, gateway_time=1_000_000.0, local_time=1_000_000.0)

    assert start.with_speed(GatewayIdentity("gateway", gateway_time=1_000_030.0, local_time=1_000_030.4)).real_time
    assert start.with_speed(GatewayIdentity("gateway", gateway_time=1_000_005.0, local_time=1_000_003.0)).clock_speed is None


def test_identity_round_trips_through_its_dict() -> None:
    identity = GatewayIdentity("gateway", 213, 1.5, 1.01, False, 10.0, 11.0)

    assert GatewayIdentity.from_dict(identity.as_dict()) == identity
    assert GatewayIdentity.from_dict({}).kind == "unknown"


def test_the_gateway_is_identified_while_the_health_watch_probes_it(sim_factory) -> None:
    # Arrange: the watch's probe connected at that moment (its client id in use)
    from health_support import hold_client_id

    from ats.gateway.probe import PROBE_CLIENT_ID

    sim = sim_factory(mode="paper", clock="manual", start="2024-01-02")

    # Act
    with hold_client_id(sim, PROBE_CLIENT_ID):
        identity = identify_gateway("127.0.0.1", sim.port)

    # Assert: identified, not "unknown" (a refused client id would leave the clock unread)
    assert identity.kind == "simulator" and identity.clock_offset_s < -365 * 86400
