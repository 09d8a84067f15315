"""``ats demo``: the whole go-live path on embedded defaults, in a few minutes, nothing configured.

In a fresh data directory, with IB Gateway simulators as the paper and live gateways on free
ports, one local Prefect API and the real QQQ bars:

 0. Prefect: reuse the server ``PREFECT_API_URL`` names (or ``ats server`` on 127.0.0.1:4200)
    when it answers, else start ``prefect server start`` on a free port with the UI, in the
    user's ``PREFECT_HOME`` (so ``ats server`` shows the demo's runs afterwards); stopped at exit.

 1. the backtest rung (HTML report);            6. the go_live flow: swap, typed confirmation
 2. paper sessions through the paper_session       (``i_understand``), the node trading live;
    flow on an accelerated clock until the      7. an order above the live cap: denied, never
    paper rung passes (parity included);           reaching the gateway;
 3. the ladder status;                          8. the gateway dropped and back: one alert and
 4. a go-live attempt without approval:            one recovery alert, delivered by apprise to a
    refused;                                       local endpoint;
 5. approve-live with a note;                   9. the kill switch;  10. ``ats audit verify``.

The demo never touches a real gateway: every gateway setting is overridden for its own process
(simulator ports, simulator accounts, SQLite store in its own directory, no Redis).  IBC
maintenance windows are switched off so that the outage alert shows whatever the time of day.

Nothing is timed from before a start of unknown length: Prefect starts in step 0 (6–25 s on a
cold machine, more on one core), and every session runs ``for_seconds`` from the moment its node
is running — never until a clock time computed before the flow call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ats.core.accounts import EXAMPLE_ACCOUNT
from ats.core.localhost import free_port, wait_until

if TYPE_CHECKING:
    from prefect.settings import Settings as PrefectSettings

    from ats.core.prefect_server import LocalPrefectServer
    from ats.gateway.controllers import SimController
    from ats.governance.audit import AuditRow
    from ats.ibsim import SimGateway

PAPER_ACCOUNT, LIVE_ACCOUNT = EXAMPLE_ACCOUNT["paper"], EXAMPLE_ACCOUNT["live"]  # the simulator's defaults
SIM_START = "2024-01-02"
TIGHT_LIVE_CAP = 3000  # USD per order in step 7, below the strategy's default 4,000 USD entries


def audit_dir(data_dir: Path) -> Path:
    """The demo's audit key and anchor: beside its data directory, never inside it (ats refuses)."""
    return data_dir.with_name(f"{data_dir.name}-audit")


@dataclass
class StepResult:
    number: int
    name: str
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0


@dataclass
class DemoPlan:
    """Timings: normal, or ``--fast`` (CI).  Session lengths count from the moment the node runs.

    The paper simulator's clock is *driven* (:class:`PaperClockDriver`): the next trading day
    comes once the node has recorded the last one and its orders have settled, as fast as the
    machine allows and never faster — on a slow machine a fixed seconds-per-day clock publishes
    the next bar while an order is still in flight, and paper and backtest then disagree.
    """

    paper_session_s: float
    live_session_s: float
    # The live simulator replays on its own clock, slower: the live cap of 2 orders per second is
    # real, and a day per 0.1 s would trip it (which is the point of the cap, not of this step).
    live_seconds_per_day: float = 0.6
    max_paper_sessions: int = 4

    @classmethod
    def make(cls, fast: bool) -> DemoPlan:
        return cls(8.0, 8.0) if fast else cls(12.0, 12.0)


@dataclass
class Demo:
    fast: bool = False
    keep: bool = False
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    results: list[StepResult] = field(default_factory=list)

    def run(self) -> int:
        from ats.core.alert_sink import AlertEndpoint

        plan = DemoPlan.make(self.fast)
        data_dir = Path(tempfile.mkdtemp(prefix="ats-demo-"))
        endpoint = AlertEndpoint()
        saved_env = dict(os.environ)
        self._configure(data_dir, endpoint.url)
        controller = None
        prefect = DemoPrefect()
        started = time.monotonic()
        try:
            from ats.core.settings import get_settings
            from ats.gateway.controllers import SimController, use_controller

            settings = get_settings()
            controller = SimController(settings, clock=plan.live_seconds_per_day, start=SIM_START,
                                       mode_options={"paper": {"clock": "manual"}})
            use_controller(controller)
            self.console.rule("[bold]ats demo[/] — backtest → paper → gated live, on simulated IB gateways")
            self.console.print(f"data directory: {data_dir}")
            context: dict[str, Any] = {"plan": plan, "settings": settings, "controller": controller,
                                       "endpoint": endpoint, "data_dir": data_dir, "prefect": prefect}
            self._run_step(0, "Prefect API", step_prefect, context)
            if self.results[0].ok:
                with prefect.using():
                    for number, (name, step) in enumerate(self._steps(), start=1):
                        self._run_step(number, name, step, context)
            total = time.monotonic() - started
            self._report(context, total)
        finally:
            prefect.close()
            if controller is not None:
                controller.close()
            from ats.gateway.controllers import use_controller
            from ats.store.engine import forget_stores

            use_controller(None)
            forget_stores()
            endpoint.close()
            os.environ.clear()
            os.environ.update(saved_env)
            from ats.core.settings import get_settings

            get_settings.cache_clear()
            if not self.keep:
                shutil.rmtree(data_dir, ignore_errors=True)
                shutil.rmtree(audit_dir(data_dir), ignore_errors=True)
        return 0 if all(r.ok for r in self.results) and len(self.results) == 11 else 1

    def _configure(self, data_dir: Path, alert_url: str) -> None:
        for key in [k for k in os.environ if k.upper().startswith("ATS_")]:
            del os.environ[key]
        os.environ.update({
            "ATS_DATA_DIR": str(data_dir),
            "ATS_AUDIT_KEY_FILE": str(audit_dir(data_dir) / "audit.key"),  # the anchor beside it
            "ATS_OPERATOR": "demo@ats",
            "ATS_ENABLE_LIVE_TRADING": "true",
            "ATS_GATEWAY_CONTROLLER": "sim",
            "ATS_IB_PAPER_PORT": str(free_port()),
            "ATS_IB_LIVE_PORT": str(free_port()),
            "ATS_IB_PAPER_ACCOUNT_ID": PAPER_ACCOUNT,
            "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
            "ATS_ALERT_URLS": alert_url,
            "ATS_GATEWAY_START_TIMEOUT_SECONDS": "30",
            "ATS_HEALTH_DAILY_RESTART_TIME": "",
            "ATS_HEALTH_WEEKLY_RESTART_DAY": "",
            "ATS_HEALTH_PROBE_TIMEOUT_SECONDS": "3",
        })
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # The ephemeral Prefect server would try to send telemetry to the internet.
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from ats.core.settings import get_settings
        from ats.store.engine import forget_stores

        get_settings.cache_clear()
        forget_stores()

    def _run_step(self, number: int, name: str, step: Callable[[dict[str, Any]], str],
                  context: dict[str, Any]) -> None:
        result = StepResult(number, name)
        self.results.append(result)
        started = time.monotonic()
        with self.console.status(f"[bold]{number}. {name}[/] …", spinner="dots"):
            try:
                result.detail = step(context)
                result.ok = True
            except Exception as exc:  # noqa: BLE001 - a failed step is reported, the demo goes on
                result.detail = f"{type(exc).__name__}: {exc}"
        result.seconds = time.monotonic() - started
        mark = "[green]✔[/]" if result.ok else "[red]✘[/]"
        self.console.print(f"{mark} [bold]{number}. {name}[/] ({result.seconds:.1f} s) — {escape(result.detail)}",
                           highlight=False)

    def _steps(self) -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
        return [
            ("backtest rung", step_backtest),
            ("paper sessions until the paper rung passes", step_paper),
            ("ladder status", step_ladder_status),
            ("go live without approval", step_refused_without_approval),
            ("approve-live", step_approve),
            ("go-live flow: swap, confirmation, live trading", step_go_live),
            ("order above a tightened live cap", step_over_cap_and_outage_and_kill),
            ("gateway dropped and back: alerts (during 7)", step_alerts),
            ("kill switch (during 7)", step_kill_result),
            ("audit verify", step_audit_verify),
        ]

    def _report(self, context: dict[str, Any], total: float) -> None:
        table = Table(title=f"ats demo — {sum(r.ok for r in self.results)}/{len(self.results)} steps OK in {total:.0f} s")
        for column in ("#", "step", "result", "time", "detail"):
            table.add_column(column, overflow="fold")
        for r in self.results:
            table.add_row(str(r.number), r.name, "[green]OK[/]" if r.ok else "[red]FAILED[/]", f"{r.seconds:.1f} s",
                          escape(r.detail))
        self.console.print(table)
        data_dir = context["data_dir"]
        where = "kept" if self.keep else "deleted at exit (use --keep to inspect)"
        self.console.print(f"artifacts ({where}):")
        self.console.print(f"  report:   {context.get('report', '(none)')}")
        env = f"ATS_DATA_DIR={data_dir} ATS_AUDIT_KEY_FILE={audit_dir(data_dir) / 'audit.key'}"
        self.console.print(f"  audit:    {env} ats audit verify")
        self.console.print(f"  sessions: {env} ats sessions list")
        self.console.print(f"  Prefect:  {context['prefect'].where_to_look()}")


class DemoPrefect:
    """The one Prefect API the demo's flows talk to (step 0).

    Reuses a server that answers (``PREFECT_API_URL``, else ``ats server``'s default
    127.0.0.1:4200); otherwise starts ``prefect server start`` with the UI on a free port in the
    user's ``PREFECT_HOME``, so the runs stay visible to ``ats server`` after the demo, and stops
    it at exit.  Never Prefect's ephemeral API: its 6–25 s start would land inside a later step.
    """

    DEFAULT_API = "http://127.0.0.1:4200/api"

    def __init__(self) -> None:
        self.url: str | None = None
        self.started_here = False
        self.server: LocalPrefectServer | None = None
        self.home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")

    def start(self) -> str:
        from ats.core.prefect_server import LocalPrefectServer, api_answers

        for candidate in (os.environ.get("PREFECT_API_URL"), self.DEFAULT_API):
            if candidate and api_answers(candidate):
                self.url = candidate.rstrip("/")
                return f"reusing the Prefect server at {self.ui_url()}"
        self.server = server = LocalPrefectServer(self.home, ui=True).start()
        self.started_here = True
        self.url = server.url
        return (f"started `prefect server` on {self.ui_url()} in {server.startup_s:.1f} s "
                f"(PREFECT_HOME={self.home})")

    def ui_url(self) -> str:
        return (self.url or "").removesuffix("/api")

    def using(self) -> AbstractContextManager[PrefectSettings]:
        """Point this process's Prefect client at the demo's API (whatever was imported before)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        os.environ["PREFECT_API_URL"] = self.url or ""
        return temporary_settings(updates={PREFECT_API_URL: self.url})

    def where_to_look(self) -> str:
        if self.url is None:
            return "no Prefect API (step 0 failed)"
        if not self.started_here:
            return f"UI at {self.ui_url()} (the demo's runs are there)"
        return (f"the demo's runs are recorded in PREFECT_HOME={self.home}; see them with `uv run ats server` "
                "→ http://127.0.0.1:4200 (the demo's own server stopped with it)")

    def close(self) -> None:
        if self.server is not None:
            # Send the flow runs' queued logs while the server still answers, not after.
            with contextlib.suppress(Exception):
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=10)
            self.server.stop()
            self.server = None


# --- the steps (each returns a one-line result or raises) -------------------------------------

def step_prefect(ctx: dict[str, Any]) -> str:
    return ctx["prefect"].start()


def step_backtest(ctx: dict[str, Any]) -> str:
    from ats.research import ladder

    settings = ctx["settings"]
    report = Path(settings.data_dir) / "reports" / "backtest-ibs_reversion-QQQ.NASDAQ.html"
    report.parent.mkdir(parents=True, exist_ok=True)
    result, verdict = ladder.run_backtest_rung("ibs_reversion", "QQQ.NASDAQ", {}, settings=settings, report=str(report))
    ctx["report"] = report
    if not verdict.passed:
        raise AssertionError(f"backtest rung FAILED: {'; '.join(verdict.reasons)}")
    m = result.metrics()
    return (f"PASS over {result.start}→{result.end}: {m['num_trades']} trades, win {m['win_rate']:.0%}, "
            f"Sharpe {m['sharpe']:.2f}, max DD {m['max_drawdown']:.1%}; report {report.name}")


def step_paper(ctx: dict[str, Any]) -> str:
    from ats.research import ladder
    from flows.paper_session import paper_session

    plan: DemoPlan = ctx["plan"]
    sessions = []
    with PaperClockDriver(ctx["controller"]) as driver:
        for _ in range(plan.max_paper_sessions):
            outcome = paper_session(strategy="ibs_reversion", instrument="QQQ.NASDAQ",
                                    for_seconds=plan.paper_session_s)
            sessions.append(outcome)
            driver.check()
            if outcome["status"] != "stopped":
                raise AssertionError(f"paper session {outcome['session_id']} {outcome['status']}: {outcome['reason']}")
            verdict = ladder.evaluate_paper_rung("ibs_reversion", "QQQ.NASDAQ", settings=ctx["settings"])
            if verdict.passed:
                trades = sum(len(s["trades"]) for s in sessions)
                return f"PASS after {len(sessions)} paper sessions ({trades} fills): {'; '.join(verdict.reasons)}"
    raise AssertionError(f"the paper rung did not pass after {len(sessions)} sessions: {'; '.join(verdict.reasons)}")


class PaperClockDriver:
    """While the paper flow runs its sessions: move the paper simulator's manual clock one
    trading day at a time, each once the running session has recorded the last day's bar and
    every order it made has settled.  Every wait polls a condition (``DAY_TIMEOUT_S`` only
    bounds a broken node); a failure is raised by :meth:`check`."""

    DAY_TIMEOUT_S = 60.0

    def __init__(self, controller: SimController) -> None:
        self.controller = controller
        self.days = 0
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-paper-clock", daemon=True)

    def __enter__(self) -> PaperClockDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        if self.error:
            raise AssertionError(f"paper clock driver: {self.error}")

    def _run(self) -> None:
        from ats.governance.sessions import running_sessions

        def running() -> str | None:
            found = running_sessions("paper")
            return found[0].id if found else None

        try:
            while not self._done.is_set():
                sim, session_id = self.controller.sim("paper"), running()
                if sim is None or session_id is None or sim.bar_subscriptions < 1:
                    self._done.wait(0.02)
                    continue
                self._advance_one_day(sim, session_id, running)
        except Exception as exc:  # noqa: BLE001 - reported by the step
            self.error = f"{type(exc).__name__}: {exc}"

    def _advance_one_day(self, sim: SimGateway, session_id: str, running: Callable[[], str | None]) -> None:
        """One trading day on, then wait for the session to record its bar and settle its orders."""
        from ats.governance.sessions import orders_settled, session_progress

        before = session_progress(session_id)["bars"]
        sim.advance(1)
        self.days += 1
        self._wait(lambda: running() != session_id or session_progress(session_id)["bars"] > before,
                   "the node to record the day's bar")
        self._wait(lambda: running() != session_id or orders_settled(session_progress(session_id)),
                   "the day's orders to settle")

    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.DAY_TIMEOUT_S
        while not predicate():
            if self._done.is_set():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {self.DAY_TIMEOUT_S:.0f} s waiting for {what}")
            self._done.wait(0.01)


def step_ladder_status(ctx: dict[str, Any]) -> str:
    from ats.research import ladder

    rows = ladder.status("ibs_reversion", "QQQ.NASDAQ")
    results = {row["rung"]: row["result"] for row in rows}
    if results != {"backtest": "PASS", "paper": "PASS", "approval": "NOT RUN"}:
        raise AssertionError(f"unexpected ladder status {results}")
    return ", ".join(f"{rung} {result}" for rung, result in results.items())


class _GateRefusalEcho(logging.Filter):
    """Drops Prefect's run-log records about a refused gate (their text carries ``[gate: …]``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith(("prefect.task_runs", "prefect.flow_runs")) and "[gate: " in record.getMessage())


@contextlib.contextmanager
def console_quiet_about_gate_refusals() -> Iterator[None]:
    """While a demo step *expects* a gate to refuse, keep Prefect's console echo of the refusal off
    the terminal: Prefect logs the failed task and the failed flow as ERRORs with two tracebacks
    (about 70 lines), which reads like a crash to a new user.  The step prints the refusal itself.
    Only Prefect's console handlers (every instance in the process) are filtered, and only for
    records carrying ``[gate: …]``: the records still reach Prefect's API, so the run's log in the
    UI shows the refusal in full, and nothing else is hidden."""
    from prefect.logging.handlers import PrefectConsoleHandler

    echo_filter = _GateRefusalEcho()
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    consoles = {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}
    for handler in consoles:
        handler.addFilter(echo_filter)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(echo_filter)


def step_refused_without_approval(ctx: dict[str, Any]) -> str:
    from flows.go_live import go_live

    with console_quiet_about_gate_refusals():
        state = go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", i_understand=LIVE_ACCOUNT,
                        return_state=True)
    if not state.is_failed():
        raise AssertionError(f"go-live without approval was not refused: {state}")
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the refusal is the expected result
        message = str(exc)
    if "[gate: approval]" not in message:
        raise AssertionError(f"refused for another reason: {message}")
    return f"refused — {message}"


def step_approve(ctx: dict[str, Any]) -> str:
    from ats.governance import approvals

    approval = approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "demo: backtest and paper rungs passed",
                                      ctx["settings"].operator)
    return f"approved by {approval.approved_by}, code {approval.fingerprint[:12]}, audit seq {approval.audit_seq}"


def step_go_live(ctx: dict[str, Any]) -> str:
    from flows.go_live import go_live

    plan: DemoPlan = ctx["plan"]
    outcome = go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", i_understand=LIVE_ACCOUNT,
                      for_seconds=plan.live_session_s)
    controller = ctx["controller"]
    live = controller.sim("live")
    if outcome["status"] != "stopped" or controller.is_up("paper"):
        raise AssertionError(f"live session {outcome['status']}: {outcome['reason']}")
    placed = [r for r in live.ledger if r["kind"] == "place"]
    if not placed:
        raise AssertionError("the live node placed no order")
    return (f"paper gateway down, live up, confirmed U***{LIVE_ACCOUNT[-4:]}; {len(placed)} live orders filled, "
            f"realised PnL {outcome['realized_pnl']}")


def step_over_cap_and_outage_and_kill(ctx: dict[str, Any]) -> str:
    """Steps 7–9 happen during one more live session; this step runs it and reports step 7."""
    from flows.go_live import go_live

    controller = ctx["controller"]
    live = controller.sim("live")
    ledger_before = len(live.ledger)
    events: dict[str, Any] = {}
    # The operator tightens the live cap below the approved sleeve's 4,000 USD entries (the
    # approval pins code, params and bar spec — not the caps, which may only protect more):
    # every entry the strategy tries is denied in the node.
    cap = TIGHT_LIVE_CAP
    os.environ["ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER"] = str(cap)
    from ats.core.settings import get_settings

    get_settings.cache_clear()
    driver = threading.Thread(target=_drive_live_session, args=(ctx, live, events), daemon=True)
    driver.start()
    try:
        outcome = go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", i_understand=LIVE_ACCOUNT,
                          for_seconds=30 * 60)
    finally:
        del os.environ["ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER"]
        get_settings.cache_clear()
    driver.join(timeout=60)
    ctx["kill_outcome"], ctx["events"] = outcome, events
    if "error" in events:
        raise AssertionError(events["error"])
    reached = {row["order_ref"].rsplit(":", 1)[0] for row in live.ledger[ledger_before:] if row.get("order_ref")}
    if events["denied_order"] in reached:
        raise AssertionError(f"the denied order {events['denied_order']} reached the gateway")
    over = [r for r in live.ledger if r["kind"] == "place"
            and float(r["quantity"]) * live.last_price("QQQ.NASDAQ") > 1.5 * cap]
    if over:
        raise AssertionError(f"orders far above the cap reached the gateway: {over}")
    return (f"{events['denied_quantity']:.0f} shares ≈ {events['denied_notional']:,.0f} USD denied in the node "
            f"({events['denied_reason']}); never in the gateway's ledger")


def _drive_live_session(ctx: dict[str, Any], live: SimGateway, events: dict[str, Any]) -> None:
    """While the over-cap live session runs: wait for a denial, drop the gateway, kill."""
    from ats.gateway.health import run_health_check
    from ats.governance import audit, killswitch

    def wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        wait_until(predicate, timeout, what, interval=0.05)

    try:
        def notional_denial() -> AuditRow | None:
            for row in audit.list_rows(action="order.denied", limit=50):
                payload = row.payload_obj()
                reason = payload["reason"]
                if payload["session_id"] == _running_live_session() and isinstance(reason, str) and "NOTIONAL" in reason:
                    return row
            return None

        wait(lambda: notional_denial() is not None, "the node to deny an order above the live cap")
        denied = notional_denial()
        if denied is None:
            raise AssertionError("the live cap's denial seen a moment ago is no longer in the audit log")
        payload = denied.payload_obj()
        reason = str(payload["reason"])
        events.update(denied_order=denied.subject, denied_reason=reason.split(":")[0],
                      denied_quantity=payload["quantity"],
                      denied_notional=float(reason.split(":")[1].split("USD")[0].replace(",", "")))
        endpoint = ctx["endpoint"]
        before = len(endpoint.posts)
        checks = [run_health_check("live").state.state]
        live.outage(8.0)
        checks += [run_health_check("live").state.state for _ in range(3)]
        live.wait_listening(timeout=30)
        checks.append(run_health_check("live").state.state)
        events["checks"] = checks
        wait(lambda: len(endpoint.posts) >= before + 2, "the two alerts", timeout=20)
        events["alerts"] = endpoint.posts[before:]
        events["kill_at"] = time.monotonic()
        killswitch.latch(["live"], "demo: kill switch", ctx["settings"].operator)
    except Exception as exc:  # noqa: BLE001 - reported by the step
        events["error"] = f"{type(exc).__name__}: {exc}"
        killswitch.latch(["live"], f"demo driver failed: {exc}", ctx["settings"].operator)


def _running_live_session() -> str | None:
    from ats.governance.sessions import running_sessions

    running = running_sessions("live")
    return running[0].id if running else None


def step_alerts(ctx: dict[str, Any]) -> str:
    events = ctx.get("events", {})
    alerts = events.get("alerts", [])
    titles = [a.get("title", "") for a in alerts]
    broken = [t for t in titles if "DOWN" in t.upper() or "BROKEN" in t.upper()]
    recovered = [t for t in titles if "RECOVER" in t.upper() or "BACK" in t.upper()]
    if len(alerts) != 2 or len(broken) != 1 or len(recovered) != 1:
        raise AssertionError(f"expected one broken and one recovery alert, got {titles} (checks {events.get('checks')})")
    return f"probes {events['checks']}; received: {titles[0]!r} then {titles[1]!r}"


def step_kill_result(ctx: dict[str, Any]) -> str:
    from ats.governance import audit

    outcome = ctx.get("kill_outcome") or {}
    if outcome.get("status") != "killed":
        raise AssertionError(f"the live session ended {outcome.get('status')}: {outcome.get('reason')}")
    latch = audit.list_rows(action="kill.latch", limit=1)[0]
    halted = audit.list_rows(action="session.halted", limit=1)[0]
    from datetime import datetime

    def ts(row: AuditRow) -> datetime:
        return datetime.fromisoformat(row.ts.replace("Z", "+00:00"))

    return (f"session killed: {outcome['reason']}; HALTED {1000 * (ts(halted) - ts(latch)).total_seconds():.0f} ms "
            f"after the latch; open orders cancelled, node stopped")


def step_audit_verify(ctx: dict[str, Any]) -> str:
    from ats.governance import audit

    result = audit.verify()
    return f"intact: {result.rows} rows, head {result.head_hash[:16]}…"
