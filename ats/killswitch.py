"""The kill switch: latch a mode (paper/live) so that its running session halts and no new
session of that mode starts until an operator clears it.

``ats kill`` writes a latch row (audited) from any process; a running session polls the store
every :data:`POLL_INTERVAL_S` and halts at once (trading state HALTED, open orders cancelled,
node stopped).  The newest row of a mode says whether it is latched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from ats import audit
from ats.errors import InputError, KillLatched
from ats.settings import Mode
from ats.store import Store, open_store, utcnow_iso
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


def _newest(conn, mode: str):  # noqa: ANN001, ANN202
    return conn.execute(
        select(kill_switch).where(kill_switch.c.mode == mode).order_by(kill_switch.c.id.desc()).limit(1)
    ).first()


def latch(modes: list[Mode], reason: str, actor: str, *, session_id: str | None = None,
          store: Store | None = None) -> list[Latch]:
    """Latch the kill switch of each mode (audited).  Latching a latched mode adds a new row."""
    if not (reason or "").strip():
        raise InputError("--reason is empty: say why the session is being killed")
    store = store or open_store()
    latches = []
    with store.write() as conn:
        for mode in modes:
            at = utcnow_iso()
            row = audit.append_in(conn, actor, "kill.latch", mode, {"reason": reason, "session_id": session_id})
            result = conn.execute(kill_switch.insert().values(
                mode=mode, action="latch", session_id=session_id, reason=reason, actor=actor, at=at,
                audit_seq=row.seq))
            latches.append(Latch(result.inserted_primary_key[0], mode, session_id, reason, actor, at))
    return latches


def clear(mode: Mode, reason: str, actor: str, *, store: Store | None = None) -> int:
    """Clear a latched kill switch (audited); refuses when it is not latched."""
    if not (reason or "").strip():
        raise InputError("--reason is empty: say why it is safe to trade again")
    store = store or open_store()
    with store.write() as conn:
        newest = _newest(conn, mode)
        if newest is None or newest.action != "latch":
            raise InputError(f"the {mode} kill switch is not latched: nothing to clear")
        row = audit.append_in(conn, actor, "kill.clear", mode, {"reason": reason, "cleared_latch": newest.id})
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
