"""Start and stop the paper and live gateways, and swap between them — never both up.

Two controllers share one small interface (:class:`GatewayController`: ``start(mode)``,
``stop(mode)``, ``is_up(mode)``):

* :class:`SimController` (``ATS_GATEWAY_CONTROLLER=sim``, the default): in-process
  :class:`ats.ibsim.SimGateway` instances on the configured ports and accounts;
* :class:`DockerController` (``ATS_GATEWAY_CONTROLLER=docker``): the real IB Gateway containers
  of ``infra/docker-compose.yml``, with exactly these commands (run from the project directory)::

      docker compose -f infra/docker-compose.yml --profile ib stop ib-gateway-paper
      docker compose -f infra/docker-compose.yml --profile ib-live up -d --wait
      docker compose -f infra/docker-compose.yml --profile ib-live stop ib-gateway-live
      docker compose -f infra/docker-compose.yml --profile ib up -d --wait

:func:`swap_to_live` stops paper, verifies that the paper port refuses connections, starts
live and verifies that the live gateway completes the API handshake with a live ``U…`` account;
:func:`swap_to_paper` is the reverse.  A verification that fails raises before the other
gateway is started (or stops the gateway that came up with the wrong account), and every
completed swap is audited (``gateway.swap``), which also tells the health check which gateway
should be up (:func:`ats.gateway.health.expected_mode`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

from ats.core.errors import GateRefused, GatewayError, InputError
from ats.gateway.probe import PROBE_CLIENT_ID, ProbeResult, probe_mode

if TYPE_CHECKING:
    import datetime as dt

    from ats.core.settings import Mode, Settings
    from ats.ibsim import SimClock, SimGateway
    from ats.store import Store

log = logging.getLogger("ats.gateway.controllers")

COMPOSE_FILE = "infra/docker-compose.yml"
MODES: tuple[Mode, ...] = ("paper", "live")
SERVICES = {"paper": "ib-gateway-paper", "live": "ib-gateway-live"}
PROFILES = {"paper": "ib", "live": "ib-live"}
OTHER: dict[Mode, Mode] = {"paper": "live", "live": "paper"}


def _check_mode(mode: str) -> str:
    if mode not in SERVICES:
        raise InputError(f"gateway mode must be paper or live, got {mode!r}")
    return mode


class GatewayController(Protocol):
    """Starts and stops the gateway of a mode."""

    name: str

    def start(self, mode: str) -> None:
        """Start ``mode``'s gateway and return once it accepts connections (idempotent)."""

    def stop(self, mode: str) -> None:
        """Stop ``mode``'s gateway (idempotent)."""

    def is_up(self, mode: str) -> bool:
        """Whether ``mode``'s gateway is running (process/container level)."""


# ------------------------------------------------------------------------------------ simulator

class SimOptions(TypedDict, total=False):
    """What a :class:`SimController` passes on to its :class:`ats.ibsim.SimGateway` instances."""

    data: dict[str, Path | str] | None
    clock: SimClock | str | float | None
    start: str | dt.date | None
    cash: float
    ledger_path: Path | str | None
    control_port: int | None
    wall_clock_time: bool
    server_version: int


class SimController:
    """Simulated gateways in this process, one per mode, on the configured host ports.

    ``sim_options`` are passed to every :class:`ats.ibsim.SimGateway` (``data``, ``clock``,
    ``start``, ``cash``, …).  ``ports`` override the settings' ports (tests use free ports).
    The simulators live as long as this process: call :meth:`close` (or use ``with``).
    """

    name = "sim"

    def __init__(self, settings: Settings | None = None, *, ports: dict[str, int] | None = None,
                 accounts: dict[str, str] | None = None, mode_options: dict[str, SimOptions] | None = None,
                 **sim_options: Unpack[SimOptions]) -> None:
        if settings is None:
            from ats.core.settings import get_settings

            settings = get_settings()
        self._settings = settings
        self._ports: dict[str, int] = {mode: (ports or {}).get(mode, settings.mode(mode).port) for mode in MODES}
        self._accounts: dict[str, str | None] = {mode: (accounts or {}).get(mode) or settings.mode(mode).account_id
                                                 for mode in MODES}
        self._options = sim_options
        self._mode_options = mode_options or {}  # per mode, over sim_options (e.g. a slower live clock)
        self._sims: dict[str, SimGateway] = {}

    def port(self, mode: str) -> int:
        return self._ports[_check_mode(mode)]

    def sim(self, mode: str) -> SimGateway | None:
        """The running :class:`SimGateway` of ``mode`` (for fault injection), or ``None``."""
        return self._sims.get(_check_mode(mode))

    def start(self, mode: str) -> None:
        from ats.ibsim import SimGateway

        _check_mode(mode)
        if mode in self._sims:
            return
        options = SimOptions(**self._options)
        options.update(self._mode_options.get(mode, {}))
        sim = SimGateway(mode=mode, account=self._accounts[mode], port=self._ports[mode],
                         host=self._settings.ib.host, **options)
        try:
            sim.start()
        except OSError as exc:
            raise GatewayError(f"cannot start the {mode} simulator on port {self._ports[mode]}: {exc}") from exc
        self._sims[mode] = sim
        log.info("%s simulator up on %s:%s", mode, self._settings.ib.host, sim.port)

    def stop(self, mode: str) -> None:
        sim = self._sims.pop(_check_mode(mode), None)
        if sim is not None:
            sim.stop()
            log.info("%s simulator stopped", mode)

    def is_up(self, mode: str) -> bool:
        sim = self._sims.get(_check_mode(mode))
        return sim is not None and sim.is_listening

    def close(self) -> None:
        for mode in list(self._sims):
            self.stop(mode)

    def __enter__(self) -> SimController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------ external

class ExternalController:
    """Gateways managed outside ats (systemd, another host, a simulator you run yourself).

    ``start``/``stop`` do nothing: the swap then only *verifies* — the other gateway refuses
    connections and ``to`` answers the API handshake with the right account — and refuses
    otherwise, telling the operator which gateway to stop or start.
    """

    name = "external"

    def start(self, mode: str) -> None:
        _check_mode(mode)

    def stop(self, mode: str) -> None:
        _check_mode(mode)

    def is_up(self, mode: str) -> bool:
        _check_mode(mode)
        return True


# ------------------------------------------------------------------------------------ docker

class DockerController:
    """The IB Gateway containers of ``infra/docker-compose.yml``, through ``docker compose``.

    Commands run in ``project_dir`` (default: the current directory, which must hold
    ``infra/docker-compose.yml``).  A non-zero exit raises :class:`GatewayError` with the
    command and the end of its output.
    """

    name = "docker"

    def __init__(self, project_dir: Path | str | None = None, *, docker: str = "docker",
                 timeout: float = 900.0) -> None:
        self.project_dir = Path(project_dir) if project_dir is not None else Path.cwd()
        self.docker = docker
        self.timeout = timeout

    def _base(self, mode: str) -> list[str]:
        return [self.docker, "compose", "-f", COMPOSE_FILE, "--profile", PROFILES[_check_mode(mode)]]

    def stop_command(self, mode: str) -> list[str]:
        return [*self._base(mode), "stop", SERVICES[mode]]

    def start_command(self, mode: str) -> list[str]:
        return [*self._base(mode), "up", "-d", "--wait"]

    def status_command(self, mode: str) -> list[str]:
        return [*self._base(mode), "ps", "--status", "running", "--quiet", SERVICES[mode]]

    def _run(self, argv: Sequence[str]) -> str:
        if shutil.which(argv[0]) is None:
            raise GatewayError(f"{argv[0]!r} not found on PATH: the docker controller needs the docker CLI "
                               "with the compose plugin (or set ATS_GATEWAY_CONTROLLER=sim)")
        if not (self.project_dir / COMPOSE_FILE).is_file():
            raise GatewayError(f"{self.project_dir / COMPOSE_FILE} not found: run from the ats project directory")
        log.info("running: %s", " ".join(argv))
        try:
            done = subprocess.run(list(argv), cwd=self.project_dir, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise GatewayError(f"`{' '.join(argv)}` did not finish within {self.timeout:.0f} s") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
            raise GatewayError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {' | '.join(tail)}")
        return done.stdout

    def start(self, mode: str) -> None:
        self._run(self.start_command(mode))

    def stop(self, mode: str) -> None:
        self._run(self.stop_command(mode))

    def is_up(self, mode: str) -> bool:
        return bool(self._run(self.status_command(mode)).strip())


_process_controller: GatewayController | None = None


def use_controller(controller: GatewayController | None) -> None:
    """Make ``controller`` the one :func:`get_controller` returns in this process (None: forget).

    A :class:`SimController` owns its simulators, so everything in a process that swaps
    gateways (the demo, an in-process flow, a test) must share one.
    """
    global _process_controller
    _process_controller = controller


def get_controller(settings: Settings | None = None, **options: Unpack[SimOptions]) -> GatewayController:
    """The controller named by ``ATS_GATEWAY_CONTROLLER`` (``sim``, ``docker`` or ``external``).

    With ``sim`` it is the process-wide :class:`SimController` (created on first use, with
    ``options`` for its simulators).
    """
    global _process_controller
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    if settings.gateway.controller == "docker":
        return DockerController()
    if settings.gateway.controller == "external":
        return ExternalController()
    if _process_controller is None or getattr(_process_controller, "name", "") != "sim":
        _process_controller = SimController(settings, **options)
    return _process_controller


# ------------------------------------------------------------------------------------ swap

@dataclass(frozen=True)
class SwapResult:
    """A completed swap: which gateway is up now and what its probe found."""

    to: str
    stopped: str
    probe: ProbeResult
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"to": self.to, "stopped": self.stopped, "probe": self.probe.as_dict(),
                "seconds": round(self.seconds, 2)}


Prober = Callable[["Mode"], ProbeResult]


def _wait_for(check: Callable[[], ProbeResult], done: Callable[[ProbeResult], bool], timeout: float,
              poll: float) -> ProbeResult:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(poll)  # production polling of a real gateway; tests wait on real events


class SwapOptions(TypedDict, total=False):
    """The keyword options of :func:`swap` (for :func:`swap_to_live` and :func:`swap_to_paper`)."""

    prober: Prober | None
    down_timeout: float
    up_timeout: float
    poll: float
    actor: str | None
    store: Store | None


def swap(to: Mode, controller: GatewayController, settings: Settings | None = None, *, prober: Prober | None = None,
         down_timeout: float = 30.0, up_timeout: float = 180.0, poll: float = 0.5,
         actor: str | None = None, store: Store | None = None) -> SwapResult:
    """Stop the other gateway, verify it refuses connections, start ``to``, verify its handshake.

    Raises :class:`GatewayError` when the other gateway still answers (``to`` is then not
    started: never both up) or when ``to`` does not answer within ``up_timeout``, and
    :class:`GateRefused` (gate ``live-gateway``) when ``to`` answers with an account of the
    wrong mode — that gateway is stopped again.  The completed swap is audited.
    """
    _check_mode(to)
    other = OTHER[to]
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    if prober is None:
        def prober(mode: Mode) -> ProbeResult:
            return probe_mode(mode, settings, timeout=5.0, client_id=PROBE_CLIENT_ID)

    _refuse_if_session_running(other, settings, actor, store)
    try:
        return _swap(to, other, controller, settings, prober, down_timeout, up_timeout, poll, actor, store)
    except (GateRefused, GatewayError) as error:
        # Audited like every refused gate (a wrong account) and every failed swap (a gateway
        # that would not stop or start): the go-live's record shows why it went no further.
        from ats.governance import audit
        from ats.store import open_store

        if isinstance(error, GateRefused):
            action, payload = "gate.refused", {"gate": error.gate, "message": str(error)}
        else:
            action, payload = "gateway.swap_failed", {"from": other, "to": to, "message": str(error)}
        audit.append(actor or settings.operator, action, to, payload,
                     store=store or open_store(settings.resolved_database_url))
        raise


def _swap(to: Mode, other: Mode, controller: GatewayController, settings: Settings, prober: Prober,
          down_timeout: float, up_timeout: float, poll: float, actor: str | None, store: Store | None) -> SwapResult:
    started = time.monotonic()
    controller.stop(other)
    down = _wait_for(lambda: prober(other), lambda r: r.reason == "refused", down_timeout, poll)
    if down.reason != "refused":
        raise GatewayError(
            f"the {other} gateway still answers on port {down.port} after stop ({down.reason}); "
            f"not starting the {to} gateway: only one gateway may be up")
    controller.start(to)
    up = _wait_for(lambda: prober(to), lambda r: r.healthy or r.reason == "wrong_account", up_timeout, poll)
    if up.reason == "wrong_account":
        controller.stop(to)
        raise GateRefused("live-gateway" if to == "live" else "paper-gateway",
                          f"the {to} gateway reports the wrong account: {up.detail}; it was stopped again",
                          f"log the {to} gateway in with the ATS_IB_{to.upper()}_ACCOUNT_ID account")
    if not up.healthy:
        raise GatewayError(f"the {to} gateway did not complete the API handshake within {up_timeout:.0f} s "
                           f"({up.reason}: {up.detail}); check its login (2FA) and logs")
    result = SwapResult(to, other, up, time.monotonic() - started)
    from ats.governance import audit
    from ats.store import open_store

    audit.append(actor or settings.operator, "gateway.swap", to, {
        "from": other, "to": to, "controller": getattr(controller, "name", type(controller).__name__),
        "port": up.port, "accounts": up.as_dict()["accounts"], "latency_ms": up.as_dict()["latency_ms"]},
        store=store or open_store(settings.resolved_database_url))
    log.info("gateway swap done: %s down, %s up (%.1f s)", other, to, result.seconds)
    return result


def _refuse_if_session_running(mode: str, settings: Settings, actor: str | None, store: Store | None) -> None:
    """Never stop a gateway under a running session of its mode (audited refusal)."""
    from ats.governance import audit
    from ats.governance.sessions import reap_dead_sessions, running_sessions
    from ats.store import open_store

    store = store or open_store(settings.resolved_database_url)
    actor = actor or settings.operator
    reap_dead_sessions(mode, actor, store=store)
    running = running_sessions(mode, store=store)
    if running:
        error = GateRefused("one-gateway", f"a {mode} session is running ({running[0].id}); its gateway is not stopped",
                            f"stop the session first: ats kill --mode {mode} --reason …")
        audit.append(actor, "gate.refused", mode, {"gate": error.gate, "message": str(error)}, store=store)
        raise error


def swap_to_live(controller: GatewayController, settings: Settings | None = None,
                 **options: Unpack[SwapOptions]) -> SwapResult:
    """Paper down (verified refused), then live up (verified handshake with a ``U…`` account)."""
    return swap("live", controller, settings, **options)


def swap_to_paper(controller: GatewayController, settings: Settings | None = None,
                  **options: Unpack[SwapOptions]) -> SwapResult:
    """Live down (verified refused), then paper up (verified handshake with a ``DU…`` account)."""
    return swap("paper", controller, settings, **options)

