"""The rung takes closed positions out of the engine's cache before the next entry (no NETTING
re-open snapshots), in a plain run, a reused engine and a run with restarts — results unchanged."""

from __future__ import annotations

import pytest

from ats.research.backtest import Backtester, run_backtest
from ats.research.catalog import import_csv, shipped_csv

PARAMS = {"buy_threshold": 0.3, "sell_threshold": 0.7}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    import_csv(shipped_csv(), "QQQ.NASDAQ", directory)
    return directory


def _snapshotted_positions(backtester: Backtester) -> set:
    engine = backtester._engine
    assert engine is not None
    return engine.cache.position_snapshot_ids(backtester.instrument_id)


def test_no_closed_position_is_snapshotted_on_re_entry(data_dir):
    # Arrange
    with Backtester("ibs_reversion", "QQQ.NASDAQ", start="2015-01-01", end="2018-12-31",
                    data_dir=data_dir) as backtester:
        # Act
        first = backtester.run(PARAMS)
        first_snapshots = _snapshotted_positions(backtester)
        second = backtester.run(PARAMS)  # the same engine, reset
        second_snapshots = _snapshotted_positions(backtester)

    # Assert: many round trips, each re-entry a new position, nothing snapshotted
    assert first.num_trades > 20
    assert first_snapshots == set() and second_snapshots == set()
    assert second.to_dict() == first.to_dict()


def test_the_purge_changes_no_result_with_restarts(data_dir, monkeypatch):
    # Arrange: the restart run's engine is disposed by run(); note its snapshots just after the simulation
    snapshots: list[set] = []
    simulate = Backtester._simulate

    def simulate_and_note(self, engine, *rest):
        outcome = simulate(self, engine, *rest)
        if engine is not self._engine:  # a restart run's own engine
            snapshots.append(engine.cache.position_snapshot_ids(self.instrument_id))
        return outcome

    monkeypatch.setattr(Backtester, "_simulate", simulate_and_note)
    plain = run_backtest("ibs_reversion", "QQQ.NASDAQ", PARAMS, start="2015-01-01", end="2018-12-31",
                         data_dir=data_dir)

    # Act: a restart at every fifth trade's entry, each on an engine of its own with its own purge
    restarts = [t["entry_date"] for t in plain.trades[::5]]
    restarted = run_backtest("ibs_reversion", "QQQ.NASDAQ", PARAMS, start="2015-01-01", end="2018-12-31",
                             data_dir=data_dir, restarts=restarts)

    # Assert: the restart engine's own purge took every closed position out before its re-entry
    assert snapshots == [set()]
    assert restarted.decision_tuples() == plain.decision_tuples()
    assert restarted.trades == plain.trades
