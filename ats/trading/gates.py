"""The gates in front of a trading session, each refusing with its name and remedy (audited).

The sequence is written once, here (DESIGN.md "The gates"):

* paper: :data:`PAPER_GATES` — account id form → kill switch → one session → gateway swap;
* live: :data:`LIVE_GATES` — edition flag → account id form → kill switch → paper rung →
  approval → one session → gateway swap → one gateway → paper evidence fits the gateway →
  typed confirmation.

:meth:`Gates.run_sequence` walks it.  The flows run it step by step, one Prefect task per gate
(``tasks.gates.check_gate``); ``python -m ats.paper|ats.live`` run it in one call
(:func:`check_gates`).  Two steps are actions whose form depends on the caller: the gateway swap
(the go-live flow swaps through the gateway controller; the CLI starts the embedded simulator
through the same controller when it is the controller and nothing answers, and never stops a
real gateway) and the typed confirmation (``--i-understand`` or a terminal prompt in the CLI, the
Prefect UI form in the flow).  Every refusal raises :class:`ats.core.errors.GateRefused` (exit 3)
*after* writing a ``gate.refused`` audit row naming the gate, the mode and the sleeves; if that
audit write fails, the StoreError propagates instead — either way nothing connects.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from ats.core.accounts import ACCOUNT_PREFIX, is_account_of
from ats.core.errors import ApprovalMissing, GateRefused, GateRowUnverified, KillLatched
from ats.core.settings import Mode, Settings, mask_account
from ats.core.sleeves import Sleeve
from ats.gateway.identity import GatewayIdentity
from ats.governance import audit
from ats.store import Store

if TYPE_CHECKING:
    from ats.trading.runner import SessionRequest

CONFIRM_ATTEMPTS = 1

#: The paper gates, in order (the swap brings the paper gateway up once they pass).
PAPER_GATES: tuple[str, ...] = ("account", "kill-switch", "one-session", "gateway-swap")
#: The live gates, in order; ``gateway-swap`` and ``confirmation`` are the caller's (see above).
LIVE_GATES: tuple[str, ...] = ("edition", "account", "kill-switch", "paper-rung", "approval", "one-session",
                               "gateway-swap", "one-gateway", "paper-evidence", "confirmation")
CALLER_STEPS = frozenset({"gateway-swap", "confirmation"})


def gate_sequence(mode: Mode) -> tuple[str, ...]:
    """The gates of ``mode`` in the order they run (anything but paper or live is refused)."""
    sequences = {"live": LIVE_GATES, "paper": PAPER_GATES}
    if mode not in sequences:
        raise ValueError(f"mode must be paper or live, got {mode!r}")
    return sequences[mode]


def paper_gateway_answers(settings: Settings) -> Callable[[], bool]:
    """Is the paper gateway up?  Anything but a refused connection counts as up: a gateway that
    accepts TCP but hangs (a 2FA dialog, a stall) may still hold the one IB session."""
    def answers() -> bool:
        from ats.gateway.probe import probe

        return probe(settings.ib.host, settings.ib.paper_port, timeout=3.0).reason != "refused"
    return answers


@dataclass
class GateResults:
    """What the gates found, by step name (``account``: the account id, ``approval``: the
    approvals, ``paper-evidence``: the live gateway's identity), in the caller's form."""

    values: dict[str, object] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return str(self.values["account"])

    @property
    def approvals(self) -> list:
        approvals = self.values.get("approval")
        return list(approvals) if isinstance(approvals, list) else []


class Gates:
    """The gates of one mode for one book of sleeves; refusals are audited as ``actor``."""

    def __init__(self, mode: Mode, settings: Settings, store: Store, sleeves: list[Sleeve],
                 actor: str | None = None) -> None:
        self.mode = mode
        self.settings = settings
        self.store = store
        self.sleeves = sleeves
        self.actor = actor or settings.operator
        self.mode_settings = settings.mode(mode)
        #: Whether the caller started the simulator it trades against (the CLI knows; None: decided
        #: by the controller, as in the flows, where the sim controller starts every gateway).
        self.started_simulator: bool | None = None

    # Refusal -----------------------------------------------------------------------------
    def refuse(self, error: GateRefused) -> NoReturn:
        audit.append(self.actor, "gate.refused", self.mode, {
            "gate": error.gate, "message": str(error), "sleeves": [s.key for s in self.sleeves],
        }, store=self.store)
        raise error

    def _run(self, check: Callable[[], None]) -> None:
        try:
            check()
        except GateRefused as error:
            self.refuse(error)

    # Individual gates ----------------------------------------------------------------------
    def edition(self) -> None:
        """Live only: ATS_ENABLE_LIVE_TRADING must be true."""
        if not self.settings.enable_live_trading:
            self.refuse(GateRefused("edition", "live trading is disabled in this edition (ATS_ENABLE_LIVE_TRADING=false)",
                                    "set ATS_ENABLE_LIVE_TRADING=true in the environment or .env to enable it"))

    def account(self) -> str:
        """The mode's account id must be set and of the mode's form (paper DU…, live U…)."""
        account = self.mode_settings.account_id
        variable = f"ATS_IB_{self.mode.upper()}_ACCOUNT_ID"
        if not account:
            self.refuse(GateRefused("account", f"{variable} is not set",
                                    f"set {variable} to your {self.mode} account id"))
        if not is_account_of(self.mode, account):
            self.refuse(GateRefused("account", f"{mask_account(account)} is not a {self.mode} account "
                                    f"({ACCOUNT_PREFIX[self.mode]} expected)",
                                    f"set {variable} to your {self.mode} account id"))
        return account

    def kill_switch(self) -> None:
        from ats.governance.killswitch import require_not_latched

        self._run(lambda: require_not_latched(self.mode, store=self.store))

    def approvals(self) -> list:
        """Every sleeve has a current approval of its params/bar-spec set with unchanged code
        (names every one lacking); a row its audit row does not back refuses on its own."""
        from ats.governance.approvals import require_live_approval

        found, missing = [], []
        for sleeve in self.sleeves:
            try:
                found.append(require_live_approval(sleeve.strategy, sleeve.instrument, sleeve.params,
                                                   sleeve.bar_spec, store=self.store))
            except GateRowUnverified as exc:
                self.refuse(exc)
            except ApprovalMissing as exc:
                missing.append((sleeve, exc))
        if missing:
            names = ", ".join(s.key for s, _ in missing)
            details = "; ".join(str(exc).removeprefix("[gate: approval] ").split(" — ")[0] for _, exc in missing)
            remedies = list(dict.fromkeys(exc.remedy for _, exc in missing if exc.remedy))
            remedy = remedies[0] if len(remedies) == 1 else "run ats approve-live for each, after its paper rung passes"
            self.refuse(ApprovalMissing("approval", f"no current go-live approval for {names} ({details})", remedy))
        return found

    def paper_rung(self) -> None:
        """Every sleeve's newest paper-rung verdict of its params/bar-spec set passed, for the
        current strategy code; a row its audit row does not back refuses on its own."""
        from ats.research.ladder import require_paper_rung

        failing = []
        for sleeve in self.sleeves:
            try:
                require_paper_rung(sleeve.strategy, sleeve.instrument, sleeve.params, sleeve.bar_spec,
                                   store=self.store)
            except GateRowUnverified as exc:
                self.refuse(exc)
            except GateRefused as exc:
                failing.append(exc)
        if len(failing) == 1:
            self.refuse(failing[0])
        if failing:
            self.refuse(GateRefused("paper-rung", "; ".join(str(exc).removeprefix("[gate: paper-rung] ")
                                                            for exc in failing)))

    def paper_evidence_fits(self, live_gateway: GatewayIdentity) -> None:
        """A live session against a real gateway needs paper evidence from a real gateway.

        A paper rung earned on a simulator or a replayed clock (``evidence: simulator``) admits
        a live session only against a simulator.  A live gateway that did not say what it is
        (``unknown``) counts as real: fail closed.
        """
        from ats.research.ladder import require_paper_rung

        if live_gateway.kind == "simulator":
            return
        for sleeve in self.sleeves:
            verdict = require_paper_rung(sleeve.strategy, sleeve.instrument, sleeve.params, sleeve.bar_spec,
                                         store=self.store)
            evidence = (verdict.metrics or {}).get("evidence", "simulator")
            if evidence != "gateway":
                days = (verdict.metrics or {}).get("trading_days")
                self.refuse(GateRefused(
                    "paper-rung", f"{sleeve.key}: the paper rung was earned on a simulator ({days} replayed days), "
                    f"and the live gateway is a real one ({live_gateway.kind}, server version "
                    f"{live_gateway.server_version}, its clock is the exchange's)",
                    "run paper sessions against the real paper gateway on real trading days until "
                    "`ats ladder paper` passes with evidence: gateway"))

    def one_gateway(self, paper_answers: Callable[[], bool]) -> None:
        """Live: its own port, and the paper gateway is not answering (IB allows one session)."""
        if self.settings.ib.live_port == self.settings.ib.paper_port:
            self.refuse(GateRefused("one-gateway", "the live port is the paper port",
                                    "set ATS_IB_LIVE_PORT and ATS_IB_PAPER_PORT to different ports"))
        if paper_answers():
            self.refuse(GateRefused(
                "one-gateway",
                f"the paper gateway on port {self.settings.ib.paper_port} is still answering (one IB session at a time)",
                "stop the paper gateway (the go-live flow's gateway swap does it) and try again"))

    def confirm(self, account: str, i_understand: str | None,
                ask: Callable[[str], str] | None = None, interactive: bool | None = None) -> None:
        """Typed confirmation of the live account id: ``--i-understand`` or a prompt on a terminal."""
        if i_understand is not None:
            answer, how = i_understand, "--i-understand"
        else:
            if interactive is None:
                interactive = sys.stdin.isatty()
            if not interactive:
                self.refuse(GateRefused("confirmation", "no terminal to confirm the live account id on",
                                        "run it in a terminal, or pass --i-understand <live account id>"))
            try:
                answer = (ask or input)("Type the live account id to trade real money on it: ")
            except EOFError:
                answer = ""
            how = "prompt"
        answer = (answer or "").strip()
        if not answer:
            self.refuse(GateRefused("confirmation", "no account id was typed",
                                    "type the live account id exactly to confirm"))
        if answer != account:
            self.refuse(GateRefused("confirmation",
                                    f"the typed account id {mask_account(answer)} is not the live account {mask_account(account)}",
                                    "type the live account id exactly to confirm"))
        audit.append(self.actor, "confirmation.accepted", self.mode,
                     {"account": mask_account(account), "how": how, "sleeves": [s.key for s in self.sleeves]},
                     store=self.store)

    def client_id_free(self, host: str, port: int, client_id: int) -> None:
        """One session per gateway, whatever store it records in: refuse when the gateway says the
        node's API client id is already in use (IB error 326) — another ats node is connected."""
        from ats.gateway.probe import probe

        result = probe(host, port, timeout=5.0, client_id=client_id)
        if result.reason == "handshake_failed" and "already in use" in result.detail:
            self.refuse(GateRefused(
                "one-session", f"the {self.mode} gateway on port {port} already has a client with id {client_id} "
                f"(another trading node is connected)", "stop that session first: one IB session at a time"))

    def confirmation_attempt(self, account: str, answer: str, how: str, operator: str | None = None,
                             attempt: int = 1) -> bool:
        """One typed answer (e.g. from the Prefect UI form): audited either way; True if it matches."""
        answer = (answer or "").strip()
        who = operator or self.actor
        if answer == account:
            audit.append(who, "confirmation.accepted", self.mode,
                         {"account": mask_account(account), "how": how, "attempt": attempt,
                          "sleeves": [s.key for s in self.sleeves]}, store=self.store)
            return True
        audit.append(who, "confirmation.mismatch", self.mode,
                     {"typed": mask_account(answer) if answer else "(empty)", "account": mask_account(account),
                      "how": how, "attempt": attempt}, store=self.store)
        return False

    def paper_evidence(self) -> GatewayIdentity:
        """Identify the live gateway (after the swap) and check the paper evidence fits it; a
        gateway that does not complete the API handshake is refused here (gate ``live-gateway``),
        before the operator types the account id."""
        from ats.gateway.identity import identify_gateway

        live = self.settings.mode("live")
        started = (self.settings.gateway.controller == "sim" if self.started_simulator is None
                   else self.started_simulator)
        identity = identify_gateway(live.host, live.port, started_by_ats=started)
        if identity.server_version is None:
            self.refuse(GateRefused(
                "live-gateway", f"the live gateway on {live.host}:{live.port} does not answer the API handshake",
                "start it (the go-live flow's gateway swap does) and try again"))
        self.paper_evidence_fits(identity)
        return identity

    # The sequence --------------------------------------------------------------------------
    def check(self, step: str) -> object:
        """Run the gate ``step`` of the sequence (not a caller's step); returns what it found."""
        checks: dict[str, Callable[[], object]] = {
            "edition": self.edition, "account": self.account, "kill-switch": self.kill_switch,
            "paper-rung": self.paper_rung, "approval": self.approvals, "one-session": self.no_session_running,
            "one-gateway": lambda: self.one_gateway(paper_gateway_answers(self.settings)),
            "paper-evidence": self.paper_evidence,
        }
        if step not in checks:
            raise ValueError(f"{step!r} is not a gate ats checks itself (gates: {', '.join(checks)})")
        return checks[step]()

    def run_sequence(self, *, swap: Callable[[], object] | None = None,
                     confirm: Callable[[GateResults], None] | None = None,
                     check: Callable[[str], object] | None = None) -> GateResults:
        """Every gate of the mode in order: ``check(step)`` for each gate ats checks (default
        :meth:`check`; the flow passes a Prefect task), ``swap()`` and ``confirm(results)`` for
        the caller's steps (both required for live; paper has no confirmation)."""
        results = GateResults()
        for step in gate_sequence(self.mode):
            if step == "gateway-swap":
                if swap is None:
                    raise ValueError("a live gate sequence needs the caller's gateway swap")
                swap()
            elif step == "confirmation":
                if confirm is None:
                    raise ValueError("a live gate sequence needs the caller's typed confirmation")
                confirm(results)
            else:
                results.values[step] = (check or self.check)(step)
        return results

    def no_session_running(self) -> None:
        """No session of any mode is running (the database enforces it too, against races)."""
        from ats.governance.sessions import one_session_refusal, reap_dead_sessions, running_sessions

        for mode in ("paper", "live"):
            reap_dead_sessions(mode, self.actor, store=self.store)
        running = running_sessions(store=self.store)
        if running:
            self.refuse(one_session_refusal(running, self.mode))

    def recheck_before_start(self) -> None:
        """The gates that can change while a start waits (swap, confirmation prompt or form):
        read again right before the session is created."""
        self.kill_switch()
        self.no_session_running()
        if self.mode == "live":
            self.edition()
            self.paper_rung()
            self.approvals()



def check_gates(request: SessionRequest, settings: Settings, store: Store, *,
                start_gateway: Callable[[], bool] | None = None,
                show_summary: Callable[[dict[str, Any]], None] | None = None,
                ask: Callable[[str], str] | None = None, interactive: bool | None = None) -> tuple[str, dict[str, Any]]:
    """Every gate of the request's mode in one call (the CLI runners); returns (account, summary).

    ``start_gateway`` is the CLI's gateway step (start the embedded simulator when it is the
    controller; True when it did; default: nothing, the gateway is up); the summary is shown before the typed
    confirmation (``request.i_understand`` or a prompt through ``ask``)."""
    from ats.trading.node import plan_for
    from ats.trading.summary import session_summary

    gates = Gates(request.mode, settings, store, request.sleeves)
    summary: dict[str, Any] = {}

    def summarise(results: GateResults) -> None:
        plan = plan_for(settings.mode(request.mode), request.sleeves, results.account, settings.redis_url,
                        settings.node_id)
        summary.update(session_summary(plan, results.approvals, request.until, request.for_seconds))
        if show_summary is not None:
            show_summary(summary)

    def confirm(results: GateResults) -> None:
        summarise(results)
        gates.confirm(results.account, request.i_understand, ask=ask, interactive=interactive)

    def swap() -> None:
        gates.started_simulator = start_gateway() if start_gateway is not None else False

    results = gates.run_sequence(swap=swap, confirm=confirm)
    if request.mode == "paper":
        summarise(results)
    return results.account, summary


__all__ = ["LIVE_GATES", "PAPER_GATES", "GateRefused", "GateResults", "Gates", "KillLatched", "check_gates"]
