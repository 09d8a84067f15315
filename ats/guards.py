"""The gates in front of a trading session, each refusing with its name and remedy (audited).

Order for live (DESIGN.md "The gates"): edition flag → account id form → kill switch → paper
rung → approval → one gateway at a time → typed confirmation.  Paper: account id form → kill
switch.  Every refusal raises :class:`ats.errors.GateRefused` (exit 3) *after* writing a
``gate.refused`` audit row naming the gate, the mode and the sleeves; if that audit write
fails, the StoreError propagates instead — either way nothing connects.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from ats import audit
from ats.errors import ApprovalMissing, GateRefused, KillLatched
from ats.settings import LIVE_ACCOUNT_RE, PAPER_ACCOUNT_RE, Mode, Settings, mask_account
from ats.sleeves import Sleeve
from ats.store import Store

CONFIRM_ATTEMPTS = 1


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
        pattern, form = (PAPER_ACCOUNT_RE, "DU…") if self.mode == "paper" else (LIVE_ACCOUNT_RE, "U…")
        if not pattern.match(account):
            self.refuse(GateRefused("account", f"{mask_account(account)} is not a {self.mode} account ({form} expected)",
                                    f"set {variable} to your {self.mode} account id"))
        return account

    def kill_switch(self) -> None:
        from ats.killswitch import require_not_latched

        self._run(lambda: require_not_latched(self.mode, store=self.store))

    def approvals(self) -> list:
        """Every sleeve has a current approval with unchanged code (names every one lacking)."""
        from ats.approvals import require_live_approval

        found, missing = [], []
        for sleeve in self.sleeves:
            try:
                found.append(require_live_approval(sleeve.strategy, sleeve.instrument, store=self.store))
            except ApprovalMissing as exc:
                missing.append((sleeve, exc))
        if missing:
            names = ", ".join(s.key for s, _ in missing)
            details = "; ".join(str(exc).removeprefix("[gate: approval] ") for _, exc in missing)
            self.refuse(ApprovalMissing("approval", f"no current go-live approval for {names} ({details})",
                                        "run ats approve-live for each, after its paper rung passes"))
        return found

    def paper_rung(self) -> None:
        """Every sleeve's newest paper-rung verdict passed, for the current strategy code."""
        from ats.ladder import require_paper_rung

        failing = []
        for sleeve in self.sleeves:
            try:
                require_paper_rung(sleeve.strategy, sleeve.instrument, store=self.store)
            except GateRefused as exc:
                failing.append(str(exc).removeprefix("[gate: paper-rung] "))
        if failing:
            self.refuse(GateRefused("paper-rung", "; ".join(failing),
                                    "run paper sessions until `ats ladder status` shows the paper rung PASS"))

    def no_other_session(self) -> None:
        """No session of the other mode may be running (paper and live share the IB login)."""
        from ats.sessions import reap_dead_sessions, running_sessions

        other = "live" if self.mode == "paper" else "paper"
        reap_dead_sessions(other, self.actor, store=self.store)
        running = running_sessions(other, store=self.store)
        if running:
            self.refuse(GateRefused("one-gateway", f"a {other} session is running ({running[0].id}, since {running[0].started_at})",
                                    f"stop it first: ats kill --mode {other} --reason …, or wait for its stop time"))

    def one_gateway(self, paper_answers: Callable[[], bool]) -> None:
        """Live: its own port, and the paper gateway is not answering (IB allows one session)."""
        if self.settings.ib_live_port == self.settings.ib_paper_port:
            self.refuse(GateRefused("one-gateway", "the live port is the paper port",
                                    "set ATS_IB_LIVE_PORT and ATS_IB_PAPER_PORT to different ports"))
        if paper_answers():
            self.refuse(GateRefused(
                "one-gateway",
                f"the paper gateway on port {self.settings.ib_paper_port} is still answering (one IB session at a time)",
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

    # Whole sequences -----------------------------------------------------------------------
    def check_paper(self) -> str:
        account = self.account()
        self.kill_switch()
        self.no_other_session()
        return account

    def no_session_running(self) -> None:
        """No session of any mode is running (the database enforces it too, against races)."""
        from ats.sessions import one_session_refusal, reap_dead_sessions, running_sessions

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

    def check_live_before_confirmation(self, paper_answers: Callable[[], bool]) -> tuple[str, list]:
        """Every live gate but the typed confirmation; returns (account, approvals)."""
        self.edition()
        account = self.account()
        self.kill_switch()
        self.paper_rung()
        approvals = self.approvals()
        self.no_other_session()
        self.one_gateway(paper_answers)
        return account, approvals


__all__ = ["Gates", "GateRefused", "KillLatched"]
