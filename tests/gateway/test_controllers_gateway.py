"""Gateway controllers: the docker controller's exact commands (a fake ``docker`` on PATH records
them), and the swap between real simulated gateways — never both up."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from health_support import make_settings

from ats.core.errors import GateRefused, GatewayError
from ats.gateway.controllers import DockerController, SimController, swap, swap_to_live, swap_to_paper
from ats.gateway.health import expected_mode
from ats.gateway.probe import probe
from ats.ibsim import SimGateway
from ats.store import open_store
from support import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE = ["compose", "-f", "infra/docker-compose.yml"]


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``docker`` executable first on PATH that appends its argv (and cwd) to a log file.

    It exits with ``$FAKE_DOCKER_EXIT`` (default 0) and prints a container id for ``ps``.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker-calls.log"
    script = bin_dir / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}) + '\\n')\n"
        "if 'ps' in sys.argv:\n"
        "    print(os.environ.get('FAKE_DOCKER_PS', ''))\n"
        "if os.environ.get('FAKE_DOCKER_EXIT', '0') != '0':\n"
        "    sys.stderr.write('Error response from daemon: no such service\\n')\n"
        "sys.exit(int(os.environ.get('FAKE_DOCKER_EXIT', '0')))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _calls(log: Path) -> list[dict]:
    import json

    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_docker_stop_paper_runs_exactly_the_seed_command(fake_docker) -> None:
    DockerController(REPO).stop("paper")
    assert _calls(fake_docker) == [{"argv": [*COMPOSE, "--profile", "ib", "stop", "ib-gateway-paper"],
                                    "cwd": str(REPO)}]


def test_docker_start_live_runs_exactly_the_seed_command(fake_docker) -> None:
    DockerController(REPO).start("live")
    assert [c["argv"] for c in _calls(fake_docker)] == [[*COMPOSE, "--profile", "ib-live", "up", "-d", "--wait"]]


def test_docker_back_to_paper_commands(fake_docker) -> None:
    controller = DockerController(REPO)
    controller.stop("live")
    controller.start("paper")
    assert [c["argv"] for c in _calls(fake_docker)] == [
        [*COMPOSE, "--profile", "ib-live", "stop", "ib-gateway-live"],
        [*COMPOSE, "--profile", "ib", "up", "-d", "--wait"],
    ]


def test_docker_is_up_asks_compose_for_the_running_service(fake_docker, monkeypatch) -> None:
    controller = DockerController(REPO)
    monkeypatch.setenv("FAKE_DOCKER_PS", "3f2a9c1d")
    assert controller.is_up("paper") is True
    monkeypatch.setenv("FAKE_DOCKER_PS", "")
    assert controller.is_up("live") is False
    assert [c["argv"] for c in _calls(fake_docker)] == [
        [*COMPOSE, "--profile", "ib", "ps", "--status", "running", "--quiet", "ib-gateway-paper"],
        [*COMPOSE, "--profile", "ib-live", "ps", "--status", "running", "--quiet", "ib-gateway-live"],
    ]


def test_docker_failure_raises_a_gateway_error_with_the_command(fake_docker, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_EXIT", "3")
    with pytest.raises(GatewayError, match=r"up -d --wait` failed \(exit 3\): Error response from daemon"):
        DockerController(REPO).start("live")


def test_docker_controller_refuses_outside_the_project(fake_docker, tmp_path) -> None:
    with pytest.raises(GatewayError, match="infra/docker-compose.yml not found"):
        DockerController(tmp_path).stop("paper")
    assert _calls(fake_docker) == []


def test_docker_swap_stops_paper_before_starting_live(fake_docker, isolated_env) -> None:
    """The swap's order with the docker controller: stop paper, verify refused, then up live."""
    live = SimGateway(mode="live", account="U7654321", port=0).start()  # what `up` would bring
    try:
        settings = make_settings(isolated_env, ib_paper_port=str(free_port()), ib_live_port=str(live.port),
                                 ib_live_account_id="U7654321")
        probes: list[tuple[str, int]] = []

        def prober(mode: str):  # noqa: ANN202 - the real probe, recording the order
            probes.append((mode, len(_calls(fake_docker))))
            ms = settings.mode(mode)
            return probe(ms.host, ms.port, mode=mode, expected_account=ms.account_id, timeout=5)

        result = swap_to_live(DockerController(REPO), settings, prober=prober)
    finally:
        live.stop()
    assert result.probe.healthy
    assert [c["argv"][4:] for c in _calls(fake_docker)] == [["ib", "stop", "ib-gateway-paper"],
                                                            ["ib-live", "up", "-d", "--wait"]]
    assert probes == [("paper", 1), ("live", 2)]  # paper verified down after stop, live after up


# ------------------------------------------------------------------------------------ simulator

@pytest.fixture
def sim_settings(isolated_env: Path):  # noqa: ANN201
    return make_settings(isolated_env, ib_paper_port=str(free_port()), ib_live_port=str(free_port()),
                         ib_paper_account_id="DU1234567", ib_live_account_id="U7654321")


@pytest.fixture
def controller(sim_settings) -> Iterator[SimController]:
    with SimController(sim_settings) as ctl:
        yield ctl


def _probe(settings, mode: str):  # noqa: ANN001, ANN202
    ms = settings.mode(mode)
    return probe(ms.host, ms.port, mode=mode, expected_account=ms.account_id, timeout=5)


def test_sim_controller_starts_and_stops_each_mode(controller, sim_settings) -> None:
    controller.start("paper")
    assert controller.is_up("paper") and not controller.is_up("live")
    assert _probe(sim_settings, "paper").accounts == ("DU1234567",)
    controller.stop("paper")
    assert not controller.is_up("paper")
    assert _probe(sim_settings, "paper").reason == "refused"


def test_swap_to_live_and_back(controller, sim_settings) -> None:
    store = open_store(sim_settings.resolved_database_url)
    controller.start("paper")
    assert expected_mode(store=store) == "paper"

    result = swap_to_live(controller, sim_settings, store=store)
    assert (result.to, result.stopped, result.probe.accounts) == ("live", "paper", ("U7654321",))
    assert _probe(sim_settings, "paper").reason == "refused"
    assert _probe(sim_settings, "live").healthy
    assert expected_mode(store=store) == "live"

    swap_to_paper(controller, sim_settings, store=store)
    assert _probe(sim_settings, "live").reason == "refused"
    assert _probe(sim_settings, "paper").healthy
    assert expected_mode(store=store) == "paper"

    from ats.governance import audit

    swaps = [row.payload_obj() for row in audit.list_rows(action="gateway.swap", store=store)]
    assert [(s["from"], s["to"]) for s in swaps] == [("paper", "live"), ("live", "paper")]
    assert swaps[0]["accounts"] == ["U***4321"]


class _StopDoesNothing(SimController):
    """A controller whose stop silently fails (a container that would not stop)."""

    def stop(self, mode: str) -> None:
        pass


def test_swap_refuses_to_start_live_while_paper_still_answers(sim_settings) -> None:
    with _StopDoesNothing(sim_settings) as ctl:
        ctl.start("paper")
        with pytest.raises(GatewayError, match="paper gateway still answers.*only one gateway may be up"):
            swap("live", ctl, sim_settings, down_timeout=0, poll=0)
        assert not ctl.is_up("live")
        assert _probe(sim_settings, "live").reason == "refused"
        SimController.stop(ctl, "paper")
    from ats.governance import audit

    [failed] = audit.list_rows(action="gateway.swap_failed", store=open_store(sim_settings.resolved_database_url))
    assert (failed.subject, failed.payload_obj()["from"]) == ("live", "paper")
    assert "paper gateway still answers" in failed.payload_obj()["message"]


class _PaperOnTheLivePort(SimController):
    """A controller that brings up a paper (DU…) gateway on the live port: a login mistake."""

    def start(self, mode: str) -> None:
        if mode == "live":
            self._sims["live"] = SimGateway(mode="paper", account="DU1234567", port=self.port("live")).start()
        else:
            super().start(mode)


def test_swap_stops_a_live_gateway_with_a_paper_account(sim_settings) -> None:
    with _PaperOnTheLivePort(sim_settings) as ctl:
        ctl.start("paper")
        with pytest.raises(GateRefused, match=r"\[gate: live-gateway\].*wrong account.*stopped again"):
            swap_to_live(ctl, sim_settings, up_timeout=0)
        assert not ctl.is_up("live") and not ctl.is_up("paper")
    assert expected_mode(store=open_store(sim_settings.resolved_database_url)) == "paper"
    from ats.governance import audit

    [refused] = audit.list_rows(action="gate.refused", store=open_store(sim_settings.resolved_database_url))
    assert (refused.subject, refused.payload_obj()["gate"]) == ("live", "live-gateway")
    assert "wrong account" in refused.payload_obj()["message"]
