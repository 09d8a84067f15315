"""The node's log file never holds a full IB account id: it is written masked (``DU***4567``).

A real runner process (``python -m ats.paper``, the real TradingNode and IB adapter) trades
against the simulator; Nautilus starts its logger once per process, so the session runs in a
process of its own, as a user's does.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from runner_support import wait_until

from ats.core.masking import mask_account
from support import later

pytestmark = pytest.mark.slow

# Buys on the first bar with a range, sells it the bar after (max_hold_bars 1): orders, fills,
# positions and account updates, each of which Nautilus logs with the account id.
ARGS = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--until", later(),
        "--params", '{"buy_threshold": 0.99, "sell_threshold": 1.0, "max_hold_bars": 1}']


def _finished_text(path: Path) -> str:
    """The log file's text once its writer (the masking filter) has finished: it holds a lock until then."""
    with open(path, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return handle.read().decode("utf-8")


def _trade_then(sim, data_dir: Path, stop: signal.Signals) -> tuple[str, str]:  # noqa: ANN001
    """Run the paper runner in a process of its own; two trading days (a buy, its sell); ``stop`` it."""
    env = {**os.environ, "ATS_DATA_DIR": str(data_dir), "ATS_IB_PAPER_PORT": str(sim.port),
           "ATS_IB_PAPER_ACCOUNT_ID": sim.account, "ATS_GATEWAY_CONTROLLER": "docker"}
    runner = subprocess.Popen([sys.executable, "-m", "ats.paper", *ARGS], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the runner's bar subscription")
        for fills in (1, 2):
            sim.advance(1)
            wait_until(lambda n=fills: sum(r.get("result") == "filled" for r in sim.ledger) >= n,
                       what=f"fill {fills}")
        runner.send_signal(stop)
        return runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()


def _the_session_log(data_dir: Path) -> tuple[Path, str]:
    logs = sorted((data_dir / "logs").glob("*.log"))
    assert [p.name.split("_")[0] for p in logs] == ["ATS-PAPER-001"], logs
    return logs[0], _finished_text(logs[0])


def test_a_trading_session_writes_its_node_log_with_the_account_id_masked(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")

    # Act: a buy and its sell, then the session is stopped (SIGTERM, as a Prefect cancel does).
    stdout, stderr = _trade_then(sim, isolated_env, signal.SIGTERM)

    # Assert: the session's log is there, says what happened, and only ever the masked id.
    _, text = _the_session_log(isolated_env)
    assert "OrderFilled" in text and "IbsReversion" in text
    leaked = [line for line in text.splitlines() if sim.account in line]
    assert leaked == [], f"{len(leaked)} log lines hold the full account id, e.g. {leaked[:3]}"
    assert mask_account(sim.account) in text
    assert sim.account not in stdout + stderr


def test_the_node_log_is_complete_and_masked_even_when_the_runner_is_killed(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")

    # Act: SIGKILL — nothing in the runner gets to run after it.
    _trade_then(sim, isolated_env, signal.SIGKILL)

    # Assert: what the logger wrote before the kill reached the file (the connection, long
    # before the fills), masked; the filter finished and removed its FIFO.
    path, text = _the_session_log(isolated_env)
    assert f"Account `{mask_account(sim.account)}` found in the connected TWS/Gateway" in text
    assert sim.account not in text
    assert list(Path(tempfile.gettempdir()).glob(f"ats-node-log-*/{path.name}")) == []
