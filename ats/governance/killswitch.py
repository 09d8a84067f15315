"""The kill switch: latch a mode (paper/live) so that its running session halts and no new
session of that mode starts until an operator clears it.

``ats kill`` writes a latch row (audited) from any process; a running session halts at once
(trading state HALTED, open orders cancelled, node stopped).  The newest row of a mode says
whether it is latched: the store is the source of truth.  How fast a session hears of it:

* after every latch, the sessions of this store on this machine are woken through their local
  socket (:mod:`ats.governance.kill_wire`) and read the switch at once (milliseconds);
* ``ats kill`` also sends the kill itself to them *before* it loads the store (see
  :func:`ats.cli.kill_fast`), so the keystroke does not wait for a second of imports;
* every session polls the store every :data:`POLL_INTERVAL_S` anyway (a session on another
  machine, a lost message).

:func:`kill` and :func:`clear` are what ``ats kill`` and the ``kill-switch`` deployment run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Row, select

from ats.core.errors import InputError, KillLatched
from ats.core.settings import Mode
from ats.governance import audit
from ats.store import Store, open_store, utcnow_iso
from ats.store.engine import inserted_id
from ats.store.models import kill_switch

MODES: tuple[Mode, ...] = ("paper", "live")
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Latch:
    """A latched kill switch: who, when, why, and the session it targeted (if any)."""

    id: int
    mode: str
    session_id: str | None
    reason: str
    actor: str
    at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _newest(conn: Connection, mode: str) -> Row[Any] | None:
    return conn.execute(
        select(kill_switch).where(kill_switch.c.mode == mode).order_by(kill_switch.c.id.desc()).limit(1)
    ).first()


def latch(modes: list[Mode], reason: str, actor: str, *, session_id: str | None = None,
          store: Store | None = None, via: str | None = None) -> list[Latch]:
    """Latch the kill switch of each mode (audited).  Latching a latched mode adds a new row.

    ``via``: where the operator pulled it when not ``ats kill`` (e.g. the ``kill-switch``
    deployment's run), recorded in the audit row."""
    if not (reason or "").strip():
        raise InputError("--reason is empty: say why the session is being killed")
    store = store or open_store()
    latches = []
    with store.write() as conn:
        for mode in modes:
            at = utcnow_iso()
            row = audit.append_in(conn, actor, "kill.latch", mode, {"reason": reason, "session_id": session_id,
                                                                    **({"via": via} if via else {})})
            result = conn.execute(kill_switch.insert().values(
                mode=mode, action="latch", session_id=session_id, reason=reason, actor=actor, at=at,
                audit_seq=row.seq))
            latches.append(Latch(inserted_id(result), mode, session_id, reason, actor, at))
    wake_sessions(store, modes)
    return latches


def wake_sessions(store: Store, modes: Sequence[str]) -> int:
    """Tell this store's running sessions on this machine to read the kill switch now."""
    from ats.governance import kill_wire

    return kill_wire.send(store_key_of(store), modes, {"kind": "wake"})


def store_key_of(store: Store) -> str:
    """The :func:`ats.governance.kill_wire.store_key` of an open store."""
    from ats.governance import kill_wire

    return kill_wire.store_key(store.url.render_as_string(hide_password=False))


def kill(*, session: str | None, mode: str | None, all_modes: bool, reason: str | None, actor: str,
         store: Store | None = None, via: str | None = None) -> list[Latch]:
    """``ats kill`` / the ``kill-switch`` deployment: exactly one of ``session`` (its mode),
    ``mode`` or ``all_modes``; ``reason`` defaults to "operator kill" (in a hurry)."""
    if sum([bool(session), bool(mode), all_modes]) != 1:
        raise InputError("give exactly one of --session ID, --mode paper|live, --all")
    if mode is not None and mode not in MODES:
        raise InputError(f"--mode {mode!r}: expected paper or live")
    store = store or open_store()
    session_id = None
    modes: list[Mode]
    if session:
        from ats.governance.sessions import get_session

        record = get_session(session, store=store, prefer_running=True)
        modes, session_id = [record.mode], record.id
    else:
        modes = list(MODES) if all_modes else [m for m in MODES if m == mode]  # mode: one of MODES (checked above)
    return latch(modes, "operator kill" if reason is None else reason, actor, session_id=session_id, store=store,
                 via=via)


def clear_mode(*, mode: str | None, session: str | None, all_modes: bool, reason: str | None, actor: str,
               store: Store | None = None, via: str | None = None) -> int:
    """``ats kill --clear`` / the ``kill-switch`` deployment's clear: one mode and a reason."""
    if mode not in MODES or session or all_modes:
        raise InputError("--clear needs exactly --mode paper|live (and --reason)")
    if reason is None:
        raise InputError("--clear needs --reason: say why it is safe to trade again")
    return clear(mode, reason, actor, store=store, via=via)


def clear(mode: Mode, reason: str, actor: str, *, store: Store | None = None, via: str | None = None) -> int:
    """Clear a latched kill switch (audited); refuses when it is not latched."""
    if not (reason or "").strip():
        raise InputError("--reason is empty: say why it is safe to trade again")
    store = store or open_store()
    with store.write() as conn:
        newest = _newest(conn, mode)
        if newest is None or newest.action != "latch":
            raise InputError(f"the {mode} kill switch is not latched: nothing to clear")
        row = audit.append_in(conn, actor, "kill.clear", mode, {"reason": reason, "cleared_latch": newest.id,
                                                                **({"via": via} if via else {})})
        conn.execute(kill_switch.insert().values(
            mode=mode, action="clear", session_id=None, reason=reason, actor=actor, at=utcnow_iso(),
            audit_seq=row.seq))
    return row.seq


def latched(mode: Mode, *, store: Store | None = None) -> Latch | None:
    """The latch of ``mode`` if its kill switch is latched, else None."""
    store = store or open_store()
    with store.read() as conn:
        newest = _newest(conn, mode)
    if newest is None or newest.action != "latch":
        return None
    return Latch(newest.id, newest.mode, newest.session_id, newest.reason, newest.actor, newest.at)


def require_not_latched(mode: Mode, *, store: Store | None = None) -> None:
    """Gate: refuse to start a session while the mode's kill switch is latched."""
    found = latched(mode, store=store)
    if found is not None:
        raise KillLatched(
            "kill-switch",
            f"the {mode} kill switch is latched (by {found.actor} at {found.at}: {found.reason})",
            f"clear it with: ats kill --clear --mode {mode} --reason \"…\"",
        )
