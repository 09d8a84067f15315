"""Gate rows checked against the audit log before a gate trusts them.

Why (issue 17, finding 4): the gates read ``rung_verdicts`` and ``approval_events``, and a plain
``INSERT`` into either — no trigger dropped — faked a paper PASS and an approval "by
ceo@corp".  Each such row names the audit row written in the same transaction
(``audit_seq``).  A gate trusts the row only when

1. that audit row exists and carries the same content: its action, subject, time, actor (for
   approvals) and payload (fingerprint, params, bar spec, passed, note, …);
2. it is the newest audit row of its family for the same sleeve and params/bar-spec set, so
   hiding a newer FAIL verdict or revocation, or replaying an old approval row, does not bring
   an old row back;
3. the chain verifies up to it: hashes, HMACs under the audit key, the anchored head present
   (:func:`ats.governance.audit.verify`).

Otherwise :func:`require` raises :class:`ats.core.errors.GateRowUnverified` (the gate refuses, and
:class:`ats.trading.gates.Gates` audits the refusal) and ``ats ladder status`` shows the row as FORGED.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select

from ats.core.errors import AuditChainBroken, GateRowUnverified
from ats.store import Store
from ats.store.models import audit_log

_EDITED = "the store was edited outside ats; run `ats audit verify`"
SET_KEYS = ("params", "bar_spec")


@dataclass(frozen=True)
class Backing:
    """What the audit log must say about one gate row."""

    label: str  # "approval", "paper verdict", …
    row_id: int
    audit_seq: int
    actions: tuple[str, ...]  # the actions the row's own audit row may have
    family: tuple[str, ...]  # the actions of the same subject and set that supersede it
    subject: str
    at: str
    payload: dict[str, Any]  # every key must be in the audit payload with the same value
    actor: str | None = None
    set_keys: tuple[str, ...] = field(default=SET_KEYS)

    @property
    def name(self) -> str:
        return f"{self.label} row {self.row_id}"


def _same(a: object, b: object) -> bool:
    from ats.governance.audit import canonical_json

    return canonical_json(a) == canonical_json(b)


def problem(store: Store, backing: Backing) -> str | None:
    """Why the audit log does not back this row (one line), or ``None`` when it does (checks 1, 2)."""
    with store.read() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.seq == backing.audit_seq)).first()
        if row is None:
            return f"{backing.name} has no matching audit row: {_EDITED}"
        try:
            payload = json.loads(row.payload)
        except ValueError:
            payload = None
        differs = _differs(row, payload, backing)
        if differs:
            return (f"{backing.name} does not match its audit row seq {backing.audit_seq} ({differs} differs): "
                    f"{_EDITED}")
        wanted = {key: payload.get(key) for key in backing.set_keys}
        family = conn.execute(
            select(audit_log.c.seq, audit_log.c.payload)
            .where(audit_log.c.action.in_(backing.family), audit_log.c.subject == backing.subject,
                   audit_log.c.seq > backing.audit_seq)
            .order_by(audit_log.c.seq.desc())
        ).all()
    for newer in family:
        try:
            other = json.loads(newer.payload)
        except ValueError:
            continue
        if isinstance(other, dict) and all(_same(other.get(k), v) for k, v in wanted.items()):
            return (f"{backing.name} is not the newest of its sleeve and params in the audit log (seq {newer.seq} "
                    f"is newer): {_EDITED}")
    return None


def _differs(row: Row[Any], payload: object, backing: Backing) -> str | None:
    if row.action not in backing.actions:
        return "action"
    if row.subject != backing.subject:
        return "subject"
    if row.ts != backing.at:
        return "time"
    if backing.actor is not None and row.actor != backing.actor:
        return "actor"
    if not isinstance(payload, dict):
        return "payload"
    for key, value in backing.payload.items():
        if key not in payload or not _same(payload[key], value):
            return key.replace("_", " ")
    return None


def chain_problem(store: Store, upto: int) -> str | None:
    """Why the chain does not verify up to seq ``upto`` (one line), or ``None`` (check 3)."""
    from ats.governance import audit

    try:
        audit.verify(store, upto=upto)
    except AuditChainBroken as exc:
        return f"the audit log does not verify up to seq {upto} ({exc}): run `ats audit verify`"
    return None


def require(store: Store, gate: str, backings: Iterable[Backing]) -> None:
    """Raise :class:`GateRowUnverified` for the first row the audit log does not back."""
    backings = list(backings)
    for backing in backings:
        why = problem(store, backing)
        if why:
            raise GateRowUnverified(gate, why)
    if backings:
        why = chain_problem(store, max(b.audit_seq for b in backings))
        if why:
            raise GateRowUnverified(gate, why)
