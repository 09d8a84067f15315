"""Other TWS API clients than the one ats pins connect at their own versions and trade.

Each client is installed from the package index into a throwaway virtual environment (never
the project's): older ``nautilus-ibapi`` releases (the stock IB client code, asking v100..176
and v100..187) and ``ib_async`` (an independent implementation with its own protocol code,
asking v157..178).  Each connects to an in-process simulator, qualifies QQQ, buys at market
(filled), rests a limit order and cancels it.  Outside CI the test skips when the package index
cannot be reached; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from ats.ibsim import SimGateway

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLIENTS = Path(__file__).resolve().parent / "clients"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory):
    """``client_env(requirement)`` → the python of a new virtual environment holding it."""
    made: dict[str, Path] = {}

    def make(requirement: str) -> Path:
        if requirement not in made:
            where = tmp_path_factory.mktemp(requirement.replace("=", "_").replace(".", "_"))
            venv.EnvBuilder(with_pip=True).create(where)
            python = where / "bin" / "python"
            result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                     requirement], capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                message = f"cannot install {requirement} from the package index: {result.stderr.strip()[-300:]}"
                if IN_CI:
                    pytest.fail(message)
                pytest.skip(message)
            made[requirement] = python
        return made[requirement]

    return make


def _run_client(python: Path, script: str, port: int) -> dict:
    result = subprocess.run([str(python), str(CLIENTS / script), "--port", str(port)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("requirement", "client_max"), [("nautilus-ibapi==10.19.4", 176),
                                                         ("nautilus-ibapi==10.30.1", 187)])
def test_older_ibapi_releases_connect_at_their_version_fill_and_cancel(
        client_env, sim_gateway: SimGateway, requirement: str, client_max: int) -> None:
    # Arrange
    python = client_env(requirement)

    # Act
    seen = _run_client(python, "ibapi_client.py", sim_gateway.port)

    # Assert
    assert (seen["client_max"], seen["server_version"]) == (client_max, client_max)
    assert sim_gateway.negotiated_versions == [client_max]
    assert (seen["con_id"], seen["filled"], seen["fill_price"]) == (320227571, "2", sim_gateway.last_price("QQQ.NASDAQ"))
    assert [(r["kind"], r["result"]) for r in sim_gateway.ledger] == [
        ("place", "filled"), ("place", "accepted"), ("cancel", "cancelled")]
    assert seen["errors"] == [202]  # the cancel's "Order Canceled - reason:"


def test_ib_async_connects_at_178_fills_and_cancels(client_env, sim_gateway: SimGateway) -> None:
    # Arrange
    python = client_env("ib_async==2.1.0")

    # Act
    seen = _run_client(python, "ib_async_client.py", sim_gateway.port)

    # Assert
    assert seen["server_version"] == 178 and sim_gateway.negotiated_versions == [178]
    assert (seen["con_id"], seen["status"], seen["filled"]) == (320227571, "Filled", "2.0")
    assert seen["fill_price"] == sim_gateway.last_price("QQQ.NASDAQ")
    assert (seen["cancelled"], seen["accounts"]) == ("Cancelled", ["DU1234567"])
    assert [(r["kind"], r["result"]) for r in sim_gateway.ledger] == [
        ("place", "filled"), ("place", "accepted"), ("cancel", "cancelled")]
