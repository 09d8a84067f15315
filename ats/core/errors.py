"""The one exception root of ats, and its tree.

Every error ats raises on purpose derives from :class:`AtsError`, so a command can catch
one type, print one line and exit non-zero.  The tree::

    AtsError
    ├── ConfigError(ValueError)        a bad ATS_* setting; names the variable
    ├── InputError(ValueError)         bad user input: params JSON, instrument id, CSV, account id
    │   └── UnknownStrategyError       a strategy name that is not registered
    ├── StrategyCodeError              a registered strategy's code cannot be loaded as fingerprinted
    ├── GateRefused                    a safety gate said no; carries .gate and .remedy
    │   ├── ApprovalMissing            no current go-live approval (or code/params changed since)
    │   ├── GateRowUnverified          a verdict/approval row without its matching audit row
    │   └── KillLatched                a kill switch is latched for the mode
    ├── NothingToDo                    an idempotent command that changed nothing (exit 0)
    ├── StoreError                     the database failed; callers fail closed
    │   └── AuditChainBroken           `audit verify` found a bad row; carries .seq
    ├── GatewayError                   temporary: the gateway did not answer (retryable)
    └── SessionError                   a trading session ended in error

Retryable errors are marked with ``retryable = True``; everything else is fatal.
"""

from __future__ import annotations


class AtsError(Exception):
    """Root of every error ats raises on purpose."""

    retryable: bool = False
    exit_code: int = 1


class ConfigError(AtsError, ValueError):
    """A setting has a bad value; the message names the ATS_* variable and what it expects."""

    exit_code = 2


class InputError(AtsError, ValueError):
    """Bad input typed by a user (CLI option, JSON params, CSV file, account id)."""

    exit_code = 2


class UnknownStrategyError(InputError):
    """A strategy name that is not in the registry."""


class StrategyCodeError(AtsError):
    """A registered strategy's module cannot run as exactly the code its fingerprint covers.

    E.g. it imports other ats code (which its fingerprint would not cover), or it has no source.
    """


class GateRefused(AtsError):
    """A safety gate refused.  ``gate`` names it, ``remedy`` says how to satisfy it."""

    exit_code = 3

    def __init__(self, gate: str, message: str, remedy: str = "") -> None:
        self.gate = gate
        self.remedy = remedy
        text = f"[gate: {gate}] {message}"
        if remedy:
            text += f" — {remedy}"
        super().__init__(text)


class ApprovalMissing(GateRefused):
    """No current go-live approval for a sleeve, or its code fingerprint changed."""


class GateRowUnverified(GateRefused):
    """A rung verdict or approval row the audit log does not back: no audit row, another content,
    not the newest for its sleeve, or the chain up to it does not verify.  The store was edited
    outside ats; the gate refuses and ``ats ladder status`` shows the row as FORGED."""


class KillLatched(GateRefused):
    """The kill switch is latched for this mode; an operator must clear it."""


class NothingToDo(AtsError):
    """The command was valid but changed nothing (e.g. approving what is already approved)."""

    exit_code = 0


class StoreError(AtsError):
    """The store (database) failed or is unavailable.  Callers fail closed."""


class AuditChainBroken(StoreError):
    """The audit hash chain does not verify; ``seq`` is the first bad sequence number."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"audit chain broken at seq {seq}: {reason}")


class GatewayError(AtsError):
    """The IB gateway did not answer as expected.  Temporary: worth retrying."""

    retryable = True


class SessionError(AtsError):
    """A trading session ended in error."""
