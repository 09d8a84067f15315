"""What stands between a strategy and real money: the keyed, anchored audit log, go-live
approvals, the gates (:mod:`.gates`: one live gate sequence), gate rows checked against the
audit log, and the kill switch (latch in the store, fast path on a local socket).

Imports ``ats.core`` and ``ats.store`` (and the research ladder's record for the paper-rung gate)."""
