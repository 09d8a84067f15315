"""Prefect task of the kill switch: latch or clear, exactly as ``ats kill`` does (one ``ats`` call)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="kill-switch", retries=0, timeout_seconds=60, log_prints=True, cache_policy=NO_CACHE)
def pull_kill_switch(action: str, operator: str, reason: str | None, mode: str | None, session: str | None,
                     via: str) -> dict[str, Any]:
    """Latch (``kill``) or clear the kill switch in the store, audited with ``operator`` as actor."""
    from ats.core.settings import get_settings
    from ats.governance import killswitch
    from ats.store import open_store

    store = open_store(get_settings().resolved_database_url)
    if action == "clear":
        seq = killswitch.clear_mode(mode=mode, session=session, all_modes=False, reason=reason, actor=operator,
                                    store=store, via=via)
        print(f"cleared the {mode} kill switch (audit seq {seq}) by {operator}: {reason}")
        return {"action": "clear", "mode": mode, "audit_seq": seq, "operator": operator}
    latches = killswitch.kill(session=session, mode=None if mode == "all" else mode, all_modes=mode == "all",
                              reason=reason, actor=operator, store=store, via=via)
    for latch in latches:
        print(f"kill switch latched for {latch.mode} by {operator}: running {latch.mode} sessions halt now"
              + (f" (session {latch.session_id})" if latch.session_id else ""))
    return {"action": "kill", "latches": [latch.as_dict() for latch in latches], "operator": operator}
