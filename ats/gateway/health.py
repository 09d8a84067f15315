"""Gateway health: a state machine over probe results, persisted in the store, that alerts once.

Each check (:func:`run_health_check`) probes the gateway that should be up, feeds the result to
:func:`evaluate` and stores the new state in ``gateway_health`` (one row per gateway) and the
probe in ``gateway_probes`` (history).  Who checks: the ``gateway-health`` flow's watch
(:func:`watch_gateway`: one long-running run a day, a check every ``ATS_HEALTH_INTERVAL_SECONDS``,
3 s, one watcher at a time by a store lease), ``ats gateway check`` (one), and every running
session, on its own connection (:class:`SessionConnectionCheck`, every second).

States: ``unknown`` (never probed) → ``healthy`` / ``broken``.  Rules (:class:`HealthPolicy`):

* **healthy→broken** after ``failures_to_alert`` (K, default 2) consecutive failed probes, so one
  blip never pages.  ``since`` is then the time of the first failed probe of the streak.
  One alert (``gateway_broken``), not one per probe.
* **wrong account** (a ``DU…`` account on the live port, a ``U…`` on the paper port, or not the
  configured account) is broken at once — it is a misconfiguration, not a blip — and has an
  alert of its own (``gateway_wrong_account``), also inside maintenance windows.
* **reminder** every ``reminder_minutes`` (R, default 15) while still broken.
* **broken→healthy**: one recovery alert with the outage's duration, only if the outage was
  alerted (an outage that stayed inside a maintenance window and ended there pages nobody).
* **maintenance windows**: IBC's daily restart (``daily_restart_time`` ± tolerance, in
  ``restart_timezone``, America/New_York by default) and the weekly cold restart
  (``weekly_restart_day``/``weekly_restart_time`` ± tolerance) suppress broken alerts and
  reminders; the first run after the window that finds the gateway still broken alerts.

Alerts are an outbox: the decision and the message are committed with the new state in one
transaction (``pending_alerts``), then delivered; what a target did not accept stays pending
(per target, by a secret-free target id) and is retried on the next check.  A failing
notification service is logged; it never fails the run and never loses the state.  Checkers
running at once (the watch and a session's monitor) share the state through serialised write
transactions, and a sender claims the pending alerts before delivering them, so an alert is
decided once and delivered once.

Time comes from an injected ``clock`` (a callable returning an aware UTC datetime) so tests
drive hours of outage without sleeping.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, select

from ats.core import alerts as _alerts
from ats.core.alerts import AlertMessage, Notifier
from ats.core.health_policy import HealthPolicy, MaintenanceWindow, Weekday  # noqa: F401 - re-exported
from ats.core.settings import mask_account
from ats.gateway.probe import ProbeResult
from ats.store import Store, open_store
from ats.store.models import gateway_health, gateway_probes

if TYPE_CHECKING:
    import threading

    from ats.core.settings import Mode, Settings

log = logging.getLogger("ats.gateway.health")

AUDIT_ACTOR = "gateway-health"
MAX_PENDING = 100  # oldest pending alerts beyond this are dropped (logged)
CLAIM_S = 60.0  # a pending alert taken by a sender that never reported back is sent again after this


def utcnow() -> datetime:
    """The default clock: now, aware, UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Store format: ``2026-11-24T11:06:52.123456Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------ policy

# ------------------------------------------------------------------------------------ state

@dataclass(frozen=True)
class PendingAlert:
    """An alert decided but not yet accepted by every target (``targets`` None = all targets)."""

    id: str
    kind: str
    title: str
    body: str
    created_at: str
    targets: tuple[str, ...] | None = None
    #: When a delivery took it (one sender at a time: the watch run and a session's monitor may
    #: both deliver); a claim older than :data:`CLAIM_S` is taken again (its sender died).
    claimed_at: str | None = None

    @property
    def message(self) -> AlertMessage:
        return AlertMessage(self.kind, self.title, self.body)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "body": self.body,
                "created_at": self.created_at, "targets": None if self.targets is None else list(self.targets),
                "claimed_at": self.claimed_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingAlert:
        targets = data.get("targets")
        return cls(str(data["id"]), str(data["kind"]), str(data["title"]), str(data["body"]),
                   str(data.get("created_at", "")), None if targets is None else tuple(targets),
                   data.get("claimed_at"))

    def claimable(self, now: datetime) -> bool:
        claimed = parse_iso(self.claimed_at)
        return claimed is None or (now - claimed).total_seconds() > CLAIM_S

    @classmethod
    def new(cls, message: AlertMessage, now: datetime) -> PendingAlert:
        return cls(uuid.uuid4().hex, message.kind, message.title, message.body, iso(now))


@dataclass(frozen=True)
class GatewayHealth:
    """One gateway's health as stored in ``gateway_health`` (plus ``failing_since``, derived)."""

    gateway: str
    state: str
    since: datetime
    consecutive_failures: int = 0
    last_reason: str | None = None
    last_probe_at: datetime | None = None
    last_alert_at: datetime | None = None
    alerted_broken: bool = False
    account: str | None = None  # masked
    pending: tuple[PendingAlert, ...] = ()
    failing_since: datetime | None = None  # first failed probe of the current streak

    @classmethod
    def initial(cls, gateway: str, now: datetime) -> GatewayHealth:
        return cls(gateway, "unknown", now)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway, "state": self.state, "since": iso(self.since),
            "consecutive_failures": self.consecutive_failures, "last_reason": self.last_reason,
            "last_probe_at": iso(self.last_probe_at) if self.last_probe_at else None,
            "last_alert_at": iso(self.last_alert_at) if self.last_alert_at else None,
            "alerted_broken": self.alerted_broken, "account": self.account,
            "pending_alerts": len(self.pending),
        }


@dataclass(frozen=True)
class Decision:
    """What :func:`evaluate` decided: the new state, the alerts to send, and why (for logs)."""

    state: GatewayHealth
    alerts: list[AlertMessage] = field(default_factory=list)
    transition: str | None = None  # "healthy", "broken", "recovered", "wrong_account"
    note: str = ""  # e.g. "alert suppressed: IBC daily restart window until …"


def evaluate(state: GatewayHealth, result: ProbeResult, now: datetime, policy: HealthPolicy,
             expected_account: str | None = None) -> Decision:
    """The state machine: ``state`` + one probe ``result`` at ``now`` → new state and alerts (pure)."""
    mode, host, port = state.gateway, result.host, result.port
    account = expected_account or (result.accounts[0] if result.accounts else None)
    reported = _masked_accounts(result.accounts) or state.account
    window = policy.window_at(now)

    if result.healthy:
        alerts: list[AlertMessage] = []
        transition = None
        if state.state == "broken" and state.alerted_broken:
            alerts.append(_alerts.gateway_recovered(mode, host, port, account, state.since, now, result.latency_ms))
        if state.state != "healthy":
            transition = "recovered" if state.state == "broken" else "healthy"
        new = replace(
            state, state="healthy", since=now if state.state != "healthy" else state.since,
            consecutive_failures=0, last_reason="ok", last_probe_at=now, alerted_broken=False,
            account=reported, failing_since=None,
            last_alert_at=now if alerts else state.last_alert_at)
        return Decision(new, alerts, transition)

    failures = state.consecutive_failures + 1
    failing_since = state.failing_since or (state.since if state.state == "broken" else now)
    wrong_account = result.reason == "wrong_account"
    becomes_broken = state.state != "broken" and (failures >= policy.failures_to_alert or wrong_account)
    new = replace(
        state, consecutive_failures=failures, last_reason=result.reason, last_probe_at=now,
        failing_since=failing_since, account=reported,
        state="broken" if (becomes_broken or state.state == "broken") else state.state,
        since=failing_since if becomes_broken else state.since)
    transition = "broken" if becomes_broken else None

    if wrong_account and state.last_reason != "wrong_account":
        message = _alerts.gateway_wrong_account(mode, host, port, expected_account, result.accounts, now)
        new = replace(new, alerted_broken=True, last_alert_at=now)
        return Decision(new, [message], "wrong_account")

    if new.state != "broken":
        return Decision(new, [], transition, f"failure {failures} of {policy.failures_to_alert} before alerting")
    if window is not None:
        return Decision(new, [], transition,
                        f"alert suppressed: {window.name} window until {iso(window.end)}")
    if not new.alerted_broken:
        started_in = policy.window_at(new.since)
        after = started_in.name if started_in is not None and started_in.end <= now else None
        message = _alerts.gateway_broken(mode, host, port, account, result.reason, new.since, failures,
                                         result.detail, after_window=after)
        return Decision(replace(new, alerted_broken=True, last_alert_at=now), [message], transition)
    if new.last_alert_at is None or now - new.last_alert_at >= policy.reminder:
        message = _alerts.gateway_reminder(mode, host, port, account, result.reason, new.since, now,
                                           failures, result.detail)
        return Decision(replace(new, last_alert_at=now), [message], transition)
    return Decision(new, [], transition)


def _masked_accounts(accounts: tuple[str, ...]) -> str | None:
    if not accounts:
        return None
    text = mask_account(accounts[0])
    if len(accounts) > 1:
        text += f" +{len(accounts) - 1}"
    return text[:32]


# ------------------------------------------------------------------------------------ store

def load_state(conn: Connection, gateway: str, now: datetime) -> GatewayHealth:
    """The stored state of ``gateway`` (``unknown`` if never probed)."""
    row = conn.execute(select(gateway_health).where(gateway_health.c.gateway == gateway)).first()
    if row is None:
        return GatewayHealth.initial(gateway, now)
    m = row._mapping
    failing_since = None
    failures = int(m["consecutive_failures"])
    if failures > 0:
        if m["state"] == "broken":
            failing_since = parse_iso(m["since"])
        else:
            ats = conn.execute(
                select(gateway_probes.c.at).where(gateway_probes.c.gateway == gateway)
                .order_by(gateway_probes.c.id.desc()).limit(failures)).scalars().all()
            failing_since = parse_iso(ats[-1]) if ats else None
    try:
        pending = tuple(PendingAlert.from_dict(item) for item in json.loads(m["pending_alerts"] or "[]"))
    except (ValueError, KeyError, TypeError):
        log.error("gateway_health.pending_alerts of %s is not valid JSON; dropping it", gateway)
        pending = ()
    return GatewayHealth(
        gateway=gateway, state=m["state"], since=parse_iso(m["since"]) or now,
        consecutive_failures=failures, last_reason=m["last_reason"],
        last_probe_at=parse_iso(m["last_probe_at"]), last_alert_at=parse_iso(m["last_alert_at"]),
        alerted_broken=bool(m["alerted_broken"]), account=m["account"], pending=pending,
        failing_since=failing_since)


def save_state(conn: Connection, state: GatewayHealth) -> None:
    values = {
        "state": state.state, "since": iso(state.since), "consecutive_failures": state.consecutive_failures,
        "last_reason": state.last_reason,
        "last_probe_at": iso(state.last_probe_at) if state.last_probe_at else None,
        "last_alert_at": iso(state.last_alert_at) if state.last_alert_at else None,
        "alerted_broken": int(state.alerted_broken),
        "pending_alerts": json.dumps([p.as_dict() for p in state.pending], sort_keys=True),
        "account": state.account,
    }
    updated = conn.execute(gateway_health.update().where(gateway_health.c.gateway == state.gateway).values(**values))
    if updated.rowcount == 0:
        conn.execute(gateway_health.insert().values(gateway=state.gateway, **values))


def _record_probe(conn: Connection, gateway: str, result: ProbeResult, now: datetime, policy: HealthPolicy) -> None:
    reason = result.reason if result.healthy or not result.detail else f"{result.reason}: {result.detail}"
    inserted = conn.execute(gateway_probes.insert().values(
        gateway=gateway, at=iso(now), healthy=int(result.healthy), latency_ms=result.latency_ms,
        reason=reason, accounts=",".join(mask_account(a) for a in result.accounts)[:200] or None))
    new_id = inserted.inserted_primary_key[0] if inserted.inserted_primary_key else None
    if new_id is not None and new_id % 100 == 0:  # prune now and then, not on every run
        cutoff = iso(now - timedelta(days=policy.history_days))
        conn.execute(delete(gateway_probes).where(gateway_probes.c.gateway == gateway, gateway_probes.c.at < cutoff))


# ------------------------------------------------------------------------------------ the run

@dataclass(frozen=True)
class CheckOutcome:
    """The result of one :func:`run_health_check`."""

    mode: str
    probe: ProbeResult
    state: GatewayHealth
    transition: str | None
    alerts: list[str]  # kinds decided this run
    delivered: int  # pending alerts fully delivered this run (new and retried)
    pending: int  # alerts still waiting for a target
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "probe": self.probe.as_dict(), "state": self.state.as_dict(),
                "transition": self.transition, "alerts": self.alerts, "delivered": self.delivered,
                "pending": self.pending, "note": self.note}


def run_health_check(
    mode: Mode,
    *,
    store: Store | None = None,
    settings: Settings | None = None,
    policy: HealthPolicy | None = None,
    clock: Callable[[], datetime] = utcnow,
    notifier: Notifier | None = None,
    probe: Callable[[], ProbeResult] | None = None,
) -> CheckOutcome:
    """One health check of ``mode``'s gateway: probe, update the stored state, send what is due.

    ``probe`` defaults to a real :func:`~ats.gateway.probe.probe_mode` with the policy's timeout;
    ``notifier`` to apprise with ``ATS_ALERT_URLS``.  Raises :class:`~ats.core.errors.StoreError`
    only when the store fails; never for the gateway or the notification service.
    """
    if mode not in ("paper", "live"):
        from ats.core.errors import InputError

        raise InputError(f"gateway mode must be paper or live, got {mode!r}")
    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    policy = policy or settings.health
    store = store or open_store(settings.resolved_database_url)
    notifier = notifier if notifier is not None else Notifier(settings.alert_url_list)
    if probe is None:
        from ats.gateway.probe import probe_mode

        def probe() -> ProbeResult:
            return probe_mode(mode, settings, timeout=policy.probe_timeout_seconds,
                              client_id=policy.probe_client_id)

    result = probe()
    now = clock()
    expected = settings.mode(mode).account_id
    with store.write() as conn:
        state = load_state(conn, mode, now)
        decision = evaluate(state, result, now, policy, expected)
        new = decision.state
        if decision.alerts:
            pending = list(new.pending) + [PendingAlert.new(m, now) for m in decision.alerts]
            if len(pending) > MAX_PENDING:
                dropped = pending[:-MAX_PENDING]
                log.error("dropping %d undelivered old alert(s) for the %s gateway", len(dropped), mode)
                pending = pending[-MAX_PENDING:]
            new = replace(new, pending=tuple(pending))
        save_state(conn, new)
        _record_probe(conn, mode, result, now, policy)
        if decision.transition:
            from ats.governance import audit

            audit.append_in(conn, AUDIT_ACTOR, f"gateway.{decision.transition}", mode, {
                "reason": result.reason, "detail": result.detail, "since": iso(new.since),
                "failures": new.consecutive_failures, "port": result.port,
                "accounts": [mask_account(a) for a in result.accounts]})
    if decision.note:
        log.info("%s gateway: %s", mode, decision.note)
    delivered, remaining = deliver_pending(mode, store=store, notifier=notifier)
    final = replace(new, pending=remaining)
    return CheckOutcome(mode, result, final, decision.transition, [m.kind for m in decision.alerts],
                        delivered, len(remaining), decision.note)


class SessionConnectionCheck:
    """A running session's own watch of its gateway, fed into the same state machine (and the
    same stored state) as the scheduled health check — so one outage pages once, whoever sees
    it first, and the recovery is paged by whoever sees it end.

    Called every second with the session's view of its connection (see
    :func:`ats.trading.supervisor.ib_connection`): ``connected`` costs nothing; ``ib_lost`` (IB error 1100:
    the gateway is up but cannot reach IB) is a failed check as such; ``disconnected`` (the
    socket is gone) is checked with a real probe, so a dropped socket the adapter re-opens by
    itself (the gateway still listening) pages nobody.  K failures in a row, one second apart,
    alert — outside IBC's restart windows, as always.
    """

    PROBE_TIMEOUT_S = 3.0  # a stalled gateway still alerts within K probes of this
    #: The monitor's probe has an API client id of its own (the watch's, ``ATS_HEALTH_PROBE_CLIENT_ID``,
    #: minus one): IB refuses a second connection with an id in use (error 326), and a probe of the
    #: watch at the same moment would otherwise count as a failed check.
    CLIENT_ID_OFFSET = -1

    def __init__(self, mode: Mode, settings: Settings, store: Store, *, policy: HealthPolicy | None = None,
                 notifier: Notifier | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.mode, self.settings, self.store, self.clock, self.notifier = mode, settings, store, clock, notifier
        policy = policy or settings.health
        self.policy = policy.model_copy(update={
            "probe_timeout_seconds": min(policy.probe_timeout_seconds, self.PROBE_TIMEOUT_S),
            "probe_client_id": max(0, policy.probe_client_id + self.CLIENT_ID_OFFSET)})
        self.lost = False
        self.outcomes: list[CheckOutcome] = []

    def __call__(self, observation: str) -> CheckOutcome | None:
        plan = self.settings.mode(self.mode)
        if observation == "connected":
            if not self.lost:
                return None
            self.lost = False
            result = ProbeResult(self.mode, plan.host, plan.port, True, "ok", None,
                                 detail="the running session's connection is back")
            return self._check(lambda: result)
        self.lost = True
        if observation == "ib_lost":
            result = ProbeResult(self.mode, plan.host, plan.port, False, "ib_disconnected", None,  # type: ignore[arg-type]
                                 detail="the session's gateway reports IB error 1100")
            return self._check(lambda: result)
        return self._check(None)  # the socket is gone: is the gateway still there?

    def _check(self, probe: Callable[[], ProbeResult] | None) -> CheckOutcome:
        outcome = run_health_check(self.mode, store=self.store, settings=self.settings, policy=self.policy,
                                   clock=self.clock, notifier=self.notifier, probe=probe)
        self.outcomes.append(outcome)
        return outcome


# ------------------------------------------------------------------------------------ the watch

WATCH_LEASE = "gateway-watch"


@dataclass
class WatchOutcome:
    """What one :func:`watch_gateway` did: probes made, alerts decided, how it ended."""

    holder: str
    probes: int = 0
    alerts: list[str] = field(default_factory=list)
    standby_ticks: int = 0  # ticks spent waiting for the lease another watcher held
    errors: int = 0
    ended: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "probes": self.probes, "alerts": self.alerts,
                "standby_ticks": self.standby_ticks, "errors": self.errors, "ended": self.ended}


def lease_ttl(policy: HealthPolicy) -> timedelta:
    """How long the watch's lease lasts without renewal: three probe intervals and one probe
    timeout, plus 10 s — a holder that stops renewing (it died) is replaced after this."""
    return timedelta(seconds=3 * policy.interval_seconds + policy.probe_timeout_seconds + 10)


def watch_gateway(mode: Mode | Literal["auto"] = "auto", *, holder: str, until: datetime | None = None,
                  for_seconds: float | None = None, store: Store | None = None,
                  settings: Settings | None = None, policy: HealthPolicy | None = None,
                  notifier: Notifier | None = None, stop: threading.Event | None = None,
                  on_check: Callable[[CheckOutcome], None] | None = None,
                  clock: Callable[[], datetime] = utcnow) -> WatchOutcome:
    """Probe the gateway every ``policy.interval_seconds`` until ``until`` (or ``stop``, a
    :class:`threading.Event`, is set): one :func:`run_health_check` per tick, on a fixed grid.

    ``for_seconds`` instead of ``until`` is a length measured from the first tick, after the
    store is open (its first use may apply migrations for seconds on a slow machine), so a short
    watch always gets its first tick.

    Only the holder of the store lease :data:`WATCH_LEASE` probes; another watcher (a second run,
    another machine) stands by and takes over when the lease is released or expires
    (:func:`lease_ttl`), so one outage is probed and alerted once.  The lease is released on the
    way out, whatever ends the watch.  A failing store or probe is logged and the watch goes on.
    ``clock`` is the checks' time (restart windows, alert times); the ticks and ``until`` are real time.
    """
    import threading
    import time as _time

    from ats.core.errors import AtsError
    from ats.store import leases

    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    policy = policy or settings.health
    store = store or open_store(settings.resolved_database_url)
    notifier = notifier if notifier is not None else Notifier(settings.alert_url_list)
    stop = stop or threading.Event()
    if for_seconds is not None and until is None:
        until = utcnow() + timedelta(seconds=for_seconds)
    elif until is None or for_seconds is not None:
        raise ValueError("watch_gateway takes exactly one of until= and for_seconds=")
    outcome, held = WatchOutcome(holder), False
    ttl, interval = lease_ttl(policy), policy.interval_seconds
    next_tick = _time.monotonic()
    try:
        while not stop.is_set() and utcnow() < until:
            try:
                if leases.acquire(store, WATCH_LEASE, holder, ttl):
                    if not held:
                        log.info("gateway watch: %s holds the lease, probing every %g s", holder, interval)
                    held = True
                    chosen = expected_mode(store=store) if mode == "auto" else mode
                    check = run_health_check(chosen, store=store, settings=settings, policy=policy,
                                             notifier=notifier, clock=clock)
                    outcome.probes += 1
                    outcome.alerts += check.alerts
                    if on_check is not None:
                        on_check(check)
                else:
                    if held:
                        log.warning("gateway watch: %s lost the lease; standing by", holder)
                    held = False
                    outcome.standby_ticks += 1
            except AtsError as exc:  # the store failed: the next tick tries again
                outcome.errors += 1
                log.error("gateway watch: %s", exc)
            next_tick = max(next_tick + interval, _time.monotonic())
            stop.wait(max(0.0, next_tick - _time.monotonic()))
        outcome.ended = "stopped" if stop.is_set() else "until reached"
    finally:
        if held:
            try:
                leases.release(store, WATCH_LEASE, holder)
            except AtsError as exc:
                log.error("gateway watch: could not release the lease (it expires by itself): %s", exc)
    return outcome


def next_watch_end(now: datetime, timezone: str = "America/New_York",
                   overlap: timedelta = timedelta(minutes=2)) -> datetime:
    """When a daily watch run started at ``now`` ends: the next midnight in ``timezone`` (when
    the next daily run starts) plus ``overlap``, so the watch is handed over, never dropped."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=tz)
    return midnight.astimezone(UTC) + overlap


def deliver_pending(mode: str, *, store: Store, notifier: Notifier) -> tuple[int, tuple[PendingAlert, ...]]:
    """Try every pending alert of ``mode``'s gateway; keep what a target refused.  Returns (delivered, remaining).

    The alerts are claimed first, in one write transaction, so two senders running at once (the
    watch run and a session's own monitor) never deliver the same alert twice."""
    now = utcnow()
    with store.write() as conn:
        state = load_state(conn, mode, now)
        items = [item for item in state.pending if item.claimable(now)]
        if items:
            taken = {item.id for item in items}
            save_state(conn, replace(state, pending=tuple(
                replace(item, claimed_at=iso(now)) if item.id in taken else item for item in state.pending)))
    if not items:
        return 0, state.pending
    outcome: dict[str, tuple[str, ...]] = {}  # id -> failed targets
    for item in items:
        outcome[item.id] = tuple(notifier.deliver(item.message, only=item.targets))
    delivered = sum(1 for failed in outcome.values() if not failed)
    with store.write() as conn:
        current = load_state(conn, mode, utcnow())
        kept: list[PendingAlert] = []
        for item in current.pending:
            if item.id not in outcome:
                kept.append(item)  # added (or claimed) by another sender meanwhile
            elif outcome[item.id]:
                kept.append(replace(item, targets=outcome[item.id], claimed_at=None))
        save_state(conn, replace(current, pending=tuple(kept)))
    if delivered:
        log.info("%s gateway: %d alert(s) delivered", mode, delivered)
    if kept:
        log.warning("%s gateway: %d alert(s) still pending, retried on the next check", mode, len(kept))
    return delivered, tuple(kept)


def gateway_status(*, store: Store | None = None, history: int = 20) -> dict[str, Any]:
    """Current state of each gateway and its ``history`` most recent probes (newest first)."""
    store = store or open_store()
    out: dict[str, Any] = {}
    with store.read() as conn:
        rows = {r._mapping["gateway"]: r._mapping for r in conn.execute(select(gateway_health))}
        for gateway in ("paper", "live"):
            m = rows.get(gateway)
            probes = conn.execute(
                select(gateway_probes).where(gateway_probes.c.gateway == gateway)
                .order_by(gateway_probes.c.id.desc()).limit(history)).all()
            entry: dict[str, Any] = {"gateway": gateway, "state": "unknown" if m is None else m["state"]}
            if m is not None:
                entry.update({
                    "since": m["since"], "consecutive_failures": m["consecutive_failures"],
                    "last_reason": m["last_reason"], "last_probe_at": m["last_probe_at"],
                    "last_alert_at": m["last_alert_at"], "alerted": bool(m["alerted_broken"]),
                    "account": m["account"], "pending_alerts": len(json.loads(m["pending_alerts"] or "[]")),
                })
            entry["history"] = [
                {"at": p._mapping["at"], "healthy": bool(p._mapping["healthy"]),
                 "latency_ms": p._mapping["latency_ms"], "reason": p._mapping["reason"],
                 "accounts": p._mapping["accounts"]} for p in probes]
            out[gateway] = entry
    return out


def expected_mode(*, store: Store | None = None) -> Mode:
    """The gateway that should be up: the target of the last audited gateway swap, else ``paper``."""
    from ats.store.models import audit_log

    store = store or open_store()
    with store.read() as conn:
        payload = conn.execute(
            select(audit_log.c.payload).where(audit_log.c.action == "gateway.swap")
            .order_by(audit_log.c.seq.desc()).limit(1)).scalar()
    if payload:
        try:
            target = json.loads(payload).get("to")
        except ValueError:
            target = None
        if target in ("paper", "live"):
            return target
    return "paper"
